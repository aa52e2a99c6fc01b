"""The CLI works without the optional extras it does not use.

`make demo` installs only the `demo` extra (no `kubernetes`, no `onnxruntime`); a requester needs
neither llama.cpp nor ONNX Runtime. Importing the CLI and running a subcommand must not need them:
each is imported only where it is used (the Kubernetes launcher, the container's runners).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

OPTIONAL = ("kubernetes", "llama_cpp", "onnxruntime", "onnx", "numpy", "regopy", "sevsnpmeasure")

_PROBE = """
import sys
for name in {optional!r}:
    sys.modules[name] = None  # any import of it now raises ModuleNotFoundError
import dvm.cli
try:
    dvm.cli.main({argv!r})
except SystemExit as exc:
    sys.exit(exc.code)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["serve", "--help"],
        ["submit", "--help"],
        ["chat", "--help"],
        ["attest", "verify", "--help"],
        ["relay", "--help"],
        ["demo", "--help"],
    ],
)
def test_cli_runs_without_optional_extras(argv: list[str]) -> None:
    probe = _PROBE.format(optional=OPTIONAL, argv=argv)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
