"""A fake job container for the node's tests: behaviour chosen by the model name.

It imports only the standard library and the launch contract's status module
(:mod:`container.launch.status`, staged next to it by ``fake_runtime.FAKE_RUNTIME``), so its
status lines and exit codes are the contract's own.

``ok``: asks the simulated PSP for evidence, prints the status lines of a one-shot job, exits 0.
``exit-N``: exits with code N at once. ``hang``: attests, then sleeps (the launcher must kill it).
``slow``: like ``ok`` but sleeps 1.5 s before delivering. With ``defaults.probe`` (a list of
paths), reports on stderr whether each is readable, plus the environment names, rlimits, cwd.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

from container.launch.status import (
    DestroyReason,
    ExitCode,
    StatusKind,
    StatusLine,
    build_status_line,
)

G_X = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


def status(line: StatusLine) -> None:
    print(build_status_line(line), flush=True)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def probe(paths: list[str]) -> None:
    for path in paths:
        target = Path(path)
        try:
            if target.is_dir():
                list(target.iterdir())
            else:
                with target.open("rb") as handle:
                    handle.read(1)
            log(f"probe {path}: READABLE")
        except OSError as exc:
            log(f"probe {path}: {type(exc).__name__}")
    log("env " + ",".join(sorted(os.environ)))
    log("rlimit_as {} {}".format(*resource.getrlimit(resource.RLIMIT_AS)))
    log("rlimit_cpu {} {}".format(*resource.getrlimit(resource.RLIMIT_CPU)))
    log("rlimit_core {} {}".format(*resource.getrlimit(resource.RLIMIT_CORE)))
    log("cwd " + str(Path.cwd()))
    log("pid " + str(os.getpid()))


def ask_psp(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    sock.sendall(bytes(range(64)))
    header = b""
    while len(header) < 4:
        header += sock.recv(4 - len(header))
    size = int.from_bytes(header, "big")
    body = b""
    while len(body) < size:
        body += sock.recv(size - len(body))
    answer = json.loads(body)
    log(f"evidence {len(answer)} item(s) of type {answer[0]['type']}")


def main() -> int:
    spec = json.loads(sys.stdin.buffer.read())
    model = spec["model"]
    name = model["name"]
    if "probe" in model.get("defaults", {}):
        probe(model["defaults"]["probe"])
    if name.startswith("exit-"):
        return int(name[5:])
    ask_psp(spec["evidence"]["fd"])
    status(StatusLine(StatusKind.ATTESTED, container=G_X, attestation="ab" * 32))
    if name == "hang":
        time.sleep(3600)
    status(StatusLine(StatusKind.READY))
    print("not a status line", flush=True)
    if name == "slow":
        time.sleep(1.5)
    status(StatusLine(StatusKind.DELIVERED, result="cd" * 32))
    status(StatusLine(StatusKind.DESTROYING, reason=DestroyReason.ONESHOT))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
