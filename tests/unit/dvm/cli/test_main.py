"""dvm.cli.main: every subcommand is registered, and ``cdvm demo`` is what ``make demo`` runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dvm.cli import demo
from dvm.cli.main import main

REPO = Path(__file__).resolve().parents[4]
SUBCOMMANDS = ("keygen", "relay", "attest", "submit", "chat", "refs", "trust", "serve", "demo")


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listed = re.search(r"\{([a-z,]+)\}", capsys.readouterr().out)
    assert listed is not None
    assert sorted(listed.group(1).split(",")) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("code", [0, 1])
def test_demo_subcommand_runs_the_demo_and_exits_with_its_code(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[None] = []

    def fake_run_demo() -> int:
        calls.append(None)
        return code

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    with pytest.raises(SystemExit) as exited:
        main(["demo"])
    assert (exited.value.code, len(calls)) == (code, 1)


def test_make_demo_runs_the_subcommand() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    assert recipe.group(1).strip() == "$(BIN)/cdvm demo"
