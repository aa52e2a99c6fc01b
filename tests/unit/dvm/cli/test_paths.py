"""dvm.cli.paths: every path argument of every ``cdvm`` command is made absolute at parse time.

Issue 13: ``cdvm relay --data ./data/relay`` wrote its config under the relative path and then
started nostr-relay in that directory, where the path named something else. Each command that
takes a path is parsed here from a temporary working directory with a RELATIVE path, and the
parsed value must be that path under the working directory; a few run for real and must name
the resolved path in their errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dvm.cli.main import _parser, main
from dvm.cli.paths import STDIN, resolved, resolved_or_stdin

_NPUB = "--provider=" + "ab" * 32
_JOB = ["--relay", "ws://127.0.0.1:1", "--model", "m", _NPUB]

# (argv, the attribute holding the path, what it is once parsed: rel -> absolute under cwd)
CASES: list[tuple[list[str], str, bool]] = [
    (["keygen", "--out", "rel/a.nsec"], "out", False),
    (["relay", "--data", "rel/relay"], "data", False),
    (["serve", "--config", "rel/provider.toml"], "config", False),
    (["submit", *_JOB, "--input", "rel/prompt.txt"], "input", False),
    (["submit", *_JOB, "--key", "rel/k.nsec"], "key", False),
    (["submit", *_JOB, "--policy", "rel/p.toml"], "policy", False),
    (["submit", *_JOB, "--trust-config", "rel/trust.toml"], "trust_config", False),
    (["submit", *_JOB, "--crl", "rel/crl.der"], "crl", True),
    (["submit", *_JOB, "--trust-simulated", "rel/ark.pem"], "trust_simulated", True),
    (["submit", *_JOB, "--gpu-measurements", "rel/gpu.json"], "gpu_measurements", True),
    (["chat", *_JOB, "--key", "rel/k.nsec"], "key", False),
    (["chat", *_JOB, "--trust-simulated", "rel/ark.pem"], "trust_simulated", True),
    (["attest", "verify", "rel/report.bin"], "input", False),
    (["attest", "verify", "x", "--cert", "rel/vcek.pem"], "cert", True),
    (["attest", "verify", "x", "--policy", "rel/p.toml"], "policy", False),
    (["attest", "verify", "x", "--crl", "rel/crl.der"], "crl", True),
    (["attest", "verify", "x", "--trust-simulated", "rel/ark.pem"], "trust_simulated", True),
    (["attest", "measure", "--root", "rel/root"], "root", False),
    (["attest", "measure", "--ovmf", "rel/OVMF.fd"], "ovmf", False),
    (["attest", "measure", "--kernel", "rel/vmlinuz"], "kernel", False),
    (["attest", "measure", "--initrd", "rel/initrd"], "initrd", False),
    (["refs", "publish", "--source-repo", "u", "--key", "rel/k.nsec"], "key", False),
    (["refs", "publish", "--source-repo", "u", "--key", "k", "--root", "rel/r"], "root", False),
    (["refs", "publish", "--source-repo", "u", "--key", "k", "--ovmf", "rel/o"], "ovmf", False),
    (["refs", "publish", "--source-repo", "u", "--key", "k", "--kernel", "rel/k"], "kernel", False),
    (["refs", "publish", "--source-repo", "u", "--key", "k", "--initrd", "rel/i"], "initrd", False),
    (["refs", "publish", "--source-repo", "u", "--key", "k", "--out", "rel/e.json"], "out", False),
    (
        ["refs", "publish", "--source-repo", "u", "--key", "k", "--gpu-measurements", "rel/g"],
        "gpu_measurements",
        True,
    ),
    (["trust", "list", "--config", "rel/trust.toml"], "config", False),
    (["trust", "add", "npub1x", "--config", "rel/trust.toml"], "config", False),
]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is neither the repository nor the tests' own."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("argv", "attr", "many"), CASES, ids=str)
def test_relative_path_arguments_are_absolute_under_the_working_directory(
    argv: list[str], attr: str, many: bool, elsewhere: Path
) -> None:
    relative = next(a for a in argv if a.startswith("rel/"))
    value = getattr(_parser().parse_args(argv), attr)
    parsed = value[0] if many else value
    assert parsed == elsewhere / relative
    assert Path(parsed).is_absolute()


def test_gpu_rims_pairs_are_both_resolved(elsewhere: Path) -> None:
    argv = ["refs", "publish", "--source-repo", "u", "--key", "k"]
    args = _parser().parse_args([*argv, "--gpu-rims", "d.rim", "v.rim"])
    assert args.gpu_rims == [[elsewhere / "d.rim", elsewhere / "v.rim"]]


def test_every_path_flag_of_the_parser_is_covered() -> None:
    """A new path flag (metavar FILE/PATH or a known path dest) must be added to CASES."""
    covered = {(argv[0], attr) for argv, attr, _ in CASES}
    path_dests = {"out", "data", "config", "input", "key", "policy", "trust_config", "crl"}
    path_dests |= {"trust_simulated", "gpu_measurements", "cert", "root", "ovmf", "kernel"}
    path_dests |= {"initrd", "gpu_rims"}
    parser = _parser()
    sub_action = next(a for a in parser._actions if a.dest == "command")
    for name, sub in sub_action.choices.items():  # type: ignore[union-attr]
        for action in _all_actions(sub):
            if action.dest in path_dests and action.type not in (resolved, resolved_or_stdin):
                pytest.fail(f"cdvm {name} {action.option_strings or action.dest} is not resolved")
    assert ("relay", "data") in covered


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found: list[argparse.Action] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_all_actions(child))
        else:
            found.append(action)
    return found


def test_input_dash_stays_standard_input(elsewhere: Path) -> None:
    assert resolved_or_stdin(STDIN) == STDIN
    assert _parser().parse_args(["submit", *_JOB, "--input", "-"]).input == STDIN
    assert resolved_or_stdin("p") == elsewhere / "p"


def test_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolved("~/k.nsec") == tmp_path / "k.nsec"


def test_keygen_writes_the_relative_file_under_the_working_directory(elsewhere: Path) -> None:
    (elsewhere / "keys").mkdir()
    with pytest.raises(SystemExit) as exited:
        main(["keygen", "--out", "keys/p.nsec"])
    assert exited.value.code == 0
    assert (elsewhere / "keys" / "p.nsec").read_text().startswith("nsec1")
    assert (elsewhere / "keys" / "p.nsec").stat().st_mode & 0o777 == 0o600


def test_errors_name_the_resolved_path(elsewhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["attest", "verify", "missing/report.bin"])
    assert exited.value.code == 2
    assert str(elsewhere / "missing" / "report.bin") in capsys.readouterr().err
