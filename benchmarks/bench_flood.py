"""A chatting container under a flood of malformed gift wraps (issue 10, item 7).

Starts what ``bench_e2e.py`` starts (a real relay, ``cdvm serve`` with the local launcher,
bubblewrap and the simulated TEE, the ONNX identity model built with ``onnx.helper``), opens
one pinned ONNX chat, and then, for each rate N of ``--rates`` in turn, in the same chat:

* a separate process (the attacker: its own key, its own relay connection) publishes
  ``ceil(N * window_s)`` distinct malformed wraps (``flood_wraps.py``: eight kinds, in turn)
  p-tagged to the container's key C, paced at N per second for ``--window-s`` seconds;
* meanwhile the requester sends ``--messages`` genuine messages, one every
  ``window_s / messages`` seconds (each after the previous answer), and times each
  send -> answer; every answer must carry the number sent (the identity model echoes it);
* then the benchmark waits until the container has logged every accepted wrap as ignored
  (the node logs the container's stderr at ``--log-level debug``), so a level's backlog is
  not charged to the next one, and reads the container's CPU time from ``/proc``.

It prints one row per level: the rate asked, sent and accepted by the relay, genuine answers
received / sent, p50 and p95 answer latency, the p50 and p95 added against the first N = 0
level of the same run (and the p50 ratio), the wraps the container dropped / the relay
accepted, how long the container took to finish them after the level, and the CPU seconds of
the container and of the relay over the level. No absolute-time assertion anywhere: the
figures are side by side. A last ``0`` level (the default ends with one) shows the drift over
the run. Wraps the relay did not accept (it falls behind first) are listed under the table.

Everything stops by itself: the flood is bounded in count and time, the attacker process is
killed if it overruns, all processes end with the run. Loopback only.

Exit status: 0 when every genuine message was answered correctly, every accepted wrap was
dropped and the chat ended with the container destroyed; 1 otherwise.
Run: ``.venv/bin/python benchmarks/bench_flood.py`` (about two minutes; ``benchmarks/README.md``
has the columns and figures); ``--json PATH`` also writes the rows as JSON (the smoke test
reads them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench_e2e import ONNX, Stack, _onnx_model, _options, _pct, _start
from flood_wraps import FLOOD_KINDS, build_flood

from dvm.client import Chat, ClientError, JobSession, Timeouts
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip59 import WRAP_KIND_EPHEMERAL
from dvm.relay import PublishError, RelayPool

TICK_S = 0.01  # the attacker publishes every wrap whose time has come, in ticks this long
READY_TIMEOUT_S = 120.0  # the attacker builds its wraps before it says "ready"
DRAIN_TIMEOUT_S = 60.0  # the container logs every accepted wrap as ignored within this
CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_FLOOD: dict[str, Any] = {"sent_rate": 0, "accepted_rate": 0, "accepted": [], "not_accepted": {}}
IGNORED = re.compile(r"ignored gift wrap ([0-9a-f]{64})")  # container/runtime.py, at INFO


def _tensor(value: int) -> str:
    return json.dumps({"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [value]}}})


# --- the attacker (a child process) ---------------------------------------------------------


async def _attack(args: argparse.Namespace) -> None:
    """Build the wraps, say ``ready``, publish them at ``rate``/s, print one JSON line."""
    count = math.ceil(args.rate * args.window_s)
    wraps = build_flood(
        count,
        PublicKey.from_hex(args.victim),
        attacker=SecretKey.generate(secrets.token_bytes),
        impersonate=PublicKey.from_hex(args.impersonate),
        job=args.job,
        now=int(time.time()),
        kind=WRAP_KIND_EPHEMERAL,  # what an attacker would send: relays keep no copy
    )
    async with RelayPool([args.relay], ok_timeout_s=30.0) as pool:
        if not await pool.wait_connected(args.relay, timeout_s=10.0):
            raise SystemExit("the attacker cannot reach the relay")
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i, wrap in enumerate(wraps):
            due = start + i / args.rate
            if due > loop.time():
                await asyncio.sleep(max(TICK_S, due - loop.time()))
            tasks.append(asyncio.create_task(pool.publish(wrap)))
        sent_s = loop.time() - start
        results = await asyncio.gather(*tasks, return_exceptions=True)
        done_s = loop.time() - start
    accepted = [
        w.id for w, r in zip(wraps, results, strict=True) if not isinstance(r, BaseException)
    ]
    not_accepted: Counter[str] = Counter()
    for r in results:
        if isinstance(r, PublishError):
            not_accepted.update(str(one.outcome) for one in r.result.relays)
        elif isinstance(r, BaseException):
            raise r
    print(
        json.dumps(
            {
                "sent_rate": len(wraps) / max(sent_s, 1e-9),
                "accepted_rate": len(accepted) / max(done_s, 1e-9),
                "accepted": accepted,
                "not_accepted": dict(not_accepted),
            }
        )
    )


# --- the requester and the measurements -----------------------------------------------------


@dataclass(frozen=True)
class Level:
    rate: int
    sent_rate: float  # wraps sent / seconds the sending took
    accepted_rate: float  # wraps the relay accepted / seconds until its last OK
    not_accepted: dict[str, int]  # wraps the relay did not accept, by outcome
    sent: int
    answered: int
    latencies_ms: tuple[float, ...]
    accepted_wraps: int  # by the relay
    dropped_wraps: int  # logged by the container as ignored
    container_cpu_s: float
    relay_cpu_s: float
    wall_s: float  # the level's start -> the last wrap dropped
    drain_s: float  # the flood's end (or the last answer) -> the last wrap dropped

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else math.nan

    @property
    def p95_ms(self) -> float:
        return _pct(list(self.latencies_ms), 0.95) if self.latencies_ms else math.nan


def _descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found.update(children)
        frontier += children
    return found


def _cpu_s(pids: list[int]) -> float:
    """utime + stime of ``pids`` (fields 14 and 15 of /proc/PID/stat), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


async def _start_attacker(
    stack: Stack, chat: JobSession, rate: int, window_s: float
) -> asyncio.subprocess.Process:
    attacker = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--attacker",
        f"--relay={stack.relay_url}",
        f"--victim={chat.verification.container}",
        f"--impersonate={chat.session_key.hex()}",
        f"--job={chat.job_id}",
        f"--rate={rate}",
        f"--window-s={window_s}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert attacker.stdout is not None
    line = await asyncio.wait_for(attacker.stdout.readline(), READY_TIMEOUT_S)
    if line.strip() != b"ready":
        attacker.kill()
        raise SystemExit(f"the attacker did not start: {line!r}")
    return attacker


async def _attacker_result(attacker: asyncio.subprocess.Process, window_s: float) -> dict[str, Any]:
    assert attacker.stdout is not None
    try:
        out = await asyncio.wait_for(attacker.stdout.read(), window_s + 60)
        code = await asyncio.wait_for(attacker.wait(), 30)
    except TimeoutError:
        # Only here: kill() after the child exited would race the child watcher's waitpid.
        attacker.kill()
        await attacker.wait()
        raise SystemExit("the attacker overran its time and was killed") from None
    if code != 0:
        raise SystemExit(f"the attacker failed (exit {code})")
    result: dict[str, Any] = json.loads(out)
    return result


async def _drained(log: Path, offset: int, ids: list[str]) -> int:
    """Wait (bounded) until the node log names every id as an ignored gift wrap; count them."""
    wanted = set(ids)
    found: set[str] = set()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    with log.open("rb") as stream:
        stream.seek(offset)
        pending = b""
        while True:
            pending += stream.read()
            lines, _, pending = pending.rpartition(b"\n")  # whole lines only
            found.update(IGNORED.findall(lines.decode(errors="replace")))
            if wanted <= found or time.monotonic() > deadline:
                return len(wanted & found)
            await asyncio.sleep(0.05)


async def _level(
    stack: Stack,
    chat: JobSession,
    pids: tuple[list[int], list[int]],  # the container's, the relay's
    rate: int,
    args: argparse.Namespace,
) -> Level:
    log = stack.directory / "node.log"
    offset = log.stat().st_size
    cpu_before = tuple(map(_cpu_s, pids))
    attacker = await _start_attacker(stack, chat, rate, args.window_s) if rate else None
    loop = asyncio.get_running_loop()
    start = loop.time()
    latencies: list[float] = []
    sent = 0
    for i in range(args.messages):
        due = start + (i + 0.5) * args.window_s / args.messages
        await asyncio.sleep(max(0.0, due - loop.time()))  # pacing, not synchronisation
        canary = 10**17 + secrets.randbelow(10**17)
        sent += 1
        began = time.perf_counter()
        try:
            answer = await chat.send(_tensor(canary))
        except ClientError as exc:
            print(f"N={rate}: genuine message {i + 1} not answered: {exc}", file=sys.stderr)
            break
        elapsed_ms = (time.perf_counter() - began) * 1000
        if json.loads(answer)["outputs"]["y"]["data"] != [canary]:
            print(f"N={rate}: genuine message {i + 1} got a wrong answer", file=sys.stderr)
            break
        latencies.append(elapsed_ms)
    flood = await _attacker_result(attacker, args.window_s) if attacker else dict(NO_FLOOD)
    accepted = flood["accepted"]
    drain_start = loop.time()
    dropped = await _drained(log, offset, accepted)
    return Level(
        rate=rate,
        sent_rate=flood["sent_rate"],
        accepted_rate=flood["accepted_rate"],
        not_accepted=flood["not_accepted"],
        sent=sent,
        answered=len(latencies),
        latencies_ms=tuple(latencies),
        accepted_wraps=len(accepted),
        dropped_wraps=dropped,
        container_cpu_s=_cpu_s(pids[0]) - cpu_before[0],
        relay_cpu_s=_cpu_s(pids[1]) - cpu_before[1],
        wall_s=loop.time() - start,
        drain_s=loop.time() - drain_start,
    )


async def _run(stack: Stack, args: argparse.Namespace) -> tuple[list[Level], bool]:
    """The levels measured, and whether the node reported the container destroyed."""
    timeouts = Timeouts(attestation_s=120, answer_s=args.answer_s, destroyed_s=60)
    options = replace(_options(stack, ONNX), timeouts=timeouts)
    levels: list[Level] = []
    async with Chat(options) as chat:
        relay, node = (p.pid for p in stack.processes)
        # Only this node's containers: other runs on the machine may have theirs.
        pids = [p for p in stack.container_pids() if p in _descendants(node)]
        relay_pids = [relay, *_descendants(relay)]
        await chat.send(_tensor(1))  # warm-up: the model's first run
        for rate in args.rates:
            level = await _level(stack, chat, (pids, relay_pids), rate, args)
            levels.append(level)
            if level.answered < level.sent:
                break  # the chat may be unusable: report what we have
        try:
            destroyed = (await chat.end()).destroyed
        except ClientError as exc:
            print(f"the chat did not end well: {exc}", file=sys.stderr)
            destroyed = False
    if not destroyed:
        print("the container was not reported destroyed", file=sys.stderr)
    return levels, destroyed


def _table(levels: list[Level]) -> list[str]:
    base = next((lv for lv in levels if lv.rate == 0 and lv.latencies_ms), None)
    head = (
        f"{'N/s':>5} {'sent/s':>6} {'acc/s':>6} {'answered':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'+p50 ms':>8} {'+p95 ms':>8} {'p50 x':>6} {'dropped/accepted':>17} {'drain s':>7} "
        f"{'C CPU s':>7} {'relay CPU s':>11}"
    )
    lines = [head, "-" * len(head)]
    for lv in levels:
        if base is None or not lv.latencies_ms:
            added = f"{'n/a':>8} {'n/a':>8} {'n/a':>6}"
        else:
            added = (
                f"{lv.p50_ms - base.p50_ms:>+8.1f} {lv.p95_ms - base.p95_ms:>+8.1f} "
                f"{lv.p50_ms / base.p50_ms:>6.2f}"
            )
        lines.append(
            f"{lv.rate:>5} {lv.sent_rate:>6.0f} {lv.accepted_rate:>6.0f} "
            f"{f'{lv.answered}/{lv.sent}':>9} "
            f"{lv.p50_ms:>8.1f} {lv.p95_ms:>8.1f} {added} "
            f"{f'{lv.dropped_wraps}/{lv.accepted_wraps}':>17} {lv.drain_s:>7.2f} "
            f"{lv.container_cpu_s:>7.2f} {lv.relay_cpu_s:>11.2f}"
        )
    lines += [
        f"N={lv.rate}: the relay did not accept {sum(lv.not_accepted.values())} wraps "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(lv.not_accepted.items()))})"
        for lv in levels
        if lv.not_accepted
    ]
    return lines


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="0,50,100,200,400,0", help="N per second, in order")
    parser.add_argument("--messages", type=int, default=20, help="genuine messages per level")
    parser.add_argument("--window-s", type=float, default=10.0, help="flood seconds per level")
    parser.add_argument("--answer-s", type=float, default=60.0, help="answer timeout")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    # the attacker process (internal)
    parser.add_argument("--attacker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--relay", "--victim", "--impersonate", "--job"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.attacker:
        args.rates = [int(r) for r in args.rates.split(",")]
        if any(r < 0 for r in args.rates) or args.messages < 1 or args.window_s <= 0:
            parser.error("rates >= 0, messages >= 1, window-s > 0")
    return args


def main() -> None:
    args = _parse_args()
    if args.attacker:
        asyncio.run(_attack(args))
        return
    with tempfile.TemporaryDirectory(prefix="cdvm-flood-") as tmp:
        directory = Path(tmp)
        onnx_path, onnx_sha = _onnx_model(directory)
        stack = _start(directory, [(ONNX, "onnx", onnx_path, onnx_sha)], ("--log-level", "debug"))
        try:
            levels, destroyed = asyncio.run(_run(stack, args))
        finally:
            stack.stop()
    print(
        f"ONNX chat, {args.messages} genuine messages per level over {args.window_s:g} s; "
        f"flood: {', '.join(FLOOD_KINDS)} (kind 21059, in turn)"
    )
    print("\n".join(_table(levels)))
    if args.json is not None:
        rows = [asdict(lv) | {"p50_ms": lv.p50_ms, "p95_ms": lv.p95_ms} for lv in levels]
        args.json.write_text(json.dumps(rows, indent=1))
    ok = destroyed and len(levels) == len(args.rates)
    ok = ok and all(
        lv.answered == lv.sent == args.messages and lv.dropped_wraps == lv.accepted_wraps
        for lv in levels
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
