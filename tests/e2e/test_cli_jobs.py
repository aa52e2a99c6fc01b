"""Jobs through the real CLI (``cdvm submit``, ``cdvm chat``) against real relay processes and a
real provider node (``cdvm serve``: local launcher, bubblewrap, simulated TEE).

Each job carries a unique canary in its input (and, for the ONNX identity model, in its answer).
After the job: the canary is in the CLI's stdout (it is the requester's data) and nowhere
else -- not in the relay's database files, the node's log (which at debug level includes the
containers' stderr), the node's data dir, or anything under the node's TMPDIR (where an
unsandboxed container's scratch lives); no process of the job remains under the node; two jobs
never share a container key.
"""

from __future__ import annotations

import json
import os
import pty
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import RelayFactory, RelayProcess

from .conftest import (
    GEMMA_NAME,
    ONNX_NAME,
    REPO,
    Model,
    Node,
    NodeFactory,
    files_containing,
    job_args,
    run_cli,
)

pytestmark = pytest.mark.relay


def _canary_number() -> int:
    # 18 decimal digits, unlikely anywhere by chance; fits int64.
    return 100_000_000_000_000_000 + secrets.randbelow(800_000_000_000_000_000)


def _tensor(*values: int) -> str:
    return json.dumps(
        {"inputs": {"x": {"shape": [1, len(values)], "dtype": "int64", "data": list(values)}}}
    )


def _assert_nowhere(canary: str, node: Node, relays: list[RelayProcess]) -> None:
    needle = canary.encode()
    for relay in relays:
        assert files_containing(relay.settings.data_dir, needle) == []
    assert canary not in node.log_text()
    assert files_containing(node.directory, needle) == []  # data dir, tmp, log, config


def _wait_no_children(node: Node, timeout_s: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := node.children()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _progress_steps(stderr: str) -> list[str]:
    return [
        line.split("]", 1)[1].split(":", 1)[0].strip()
        for line in stderr.splitlines()
        if line.startswith("[")
    ]


@pytest.mark.slow
def test_onnx_oneshot_and_chat_keep_the_canary_inside(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    relays = [relay_factory()]
    node = node_factory(relays, [onnx_model])
    canary_a, canary_b, canary_c = (_canary_number() for _ in range(3))

    oneshot = run_cli(  # the input on standard input, the default
        "submit", *job_args(node, relays, ONNX_NAME, "--json"), stdin=_tensor(canary_a, 7)
    )
    assert oneshot.returncode == 0, oneshot.stderr + node.log_text()[-3000:]
    doc = json.loads(oneshot.stdout)
    assert json.loads(doc["answer"])["outputs"]["y"]["data"] == [canary_a, 7]
    assert doc["destroyed"] is True
    assert doc["status"] == "success"
    assert doc["verified"]["simulated"] is True
    assert doc["verified"]["label"] == "SIMULATED: not confidential"
    assert doc["verified"]["claims"]["job"] == doc["job"]
    assert doc["verified"]["claims"]["pubkey"] == doc["container"]
    assert doc["verified"]["claims"]["provider"] == node.key.public_key.hex()
    assert oneshot.stderr == ""  # --json is quiet (and stdin draws no --prompt warning)
    assert _wait_no_children(node) == []

    chat = run_cli(
        "chat",
        *job_args(node, relays, ONNX_NAME),
        stdin=f"{_tensor(canary_b)}\n{_tensor(canary_c, canary_c)}\n/end\n",
    )
    assert chat.returncode == 0, chat.stderr + node.log_text()[-3000:]
    answers = [json.loads(line) for line in chat.stdout.splitlines()]
    assert [a["outputs"]["y"]["data"] for a in answers] == [[canary_b], [canary_c, canary_c]]
    steps = _progress_steps(chat.stderr)
    assert steps[:3] == ["request published", "container launched", "evidence verified"]
    assert steps[3:7] == ["input sent", "answer", "input sent", "answer"]
    assert steps[-1] == "container destroyed"
    assert "SIMULATED: not confidential" in chat.stderr
    assert "checked:" in chat.stderr
    chat_container = chat.stderr.split("container launched: container ", 1)[1].split()[0]
    assert chat_container != doc["container"]  # two jobs never share a container key
    assert _wait_no_children(node) == []

    for canary in (canary_a, canary_b, canary_c):
        _assert_nowhere(str(canary), node, relays)
    assert [p for p in node.tmp_dir.iterdir() if p.name.startswith("cdvm-job-")] == []


@pytest.mark.slow
def test_gemma_oneshot_and_chat(
    relay_factory: RelayFactory, node_factory: NodeFactory, gemma_model: Model
) -> None:
    relays = [relay_factory()]
    node = node_factory(relays, [gemma_model])
    canary = f"zq{secrets.token_hex(6)}x"
    oneshot = run_cli(
        "submit",
        *job_args(node, relays, GEMMA_NAME, "--param", "max_tokens=16", "--json"),
        "--prompt",
        f"The secret word is {canary}. The capital of France is",
    )
    assert oneshot.returncode == 0, oneshot.stderr + node.log_text()[-3000:]
    doc = json.loads(oneshot.stdout)
    assert doc["answer"].strip()
    assert doc["destroyed"] is True
    assert doc["verified"]["claims"]["model"]["sha256"] == gemma_model.sha256

    chat = run_cli(
        "chat",
        *job_args(node, relays, GEMMA_NAME, "--param", "max_tokens=8"),
        stdin=f"My code is {canary}. One, two,\nThe sky is\n/end\n",
    )
    assert chat.returncode == 0, chat.stderr + node.log_text()[-3000:]
    assert len([s for s in _progress_steps(chat.stderr) if s == "answer"]) == 2
    assert "container destroyed" in chat.stderr
    assert _wait_no_children(node) == []
    _assert_nowhere(canary, node, relays)


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = run_cli("submit", "--provider", "npub1x", "--relay", "ws://127.0.0.1:1")
    assert missing.returncode == 2  # argparse: --model is required
    bad_provider = run_cli(
        "submit",
        "--provider",
        "npub1nope",
        "--relay",
        "ws://127.0.0.1:1",
        "--model",
        "m",
        "--prompt",
        "x",
    )
    assert bad_provider.returncode == 2
    assert "not an npub" in bad_provider.stderr
    bad_param = run_cli(
        "submit",
        "--provider",
        "ab" * 32,
        "--relay",
        "ws://127.0.0.1:1",
        "--model",
        "m",
        "--param",
        "model=other",
        "--prompt",
        "x",
    )
    assert bad_param.returncode == 2
    assert "its own option" in bad_param.stderr
    tagged = "registry.example/cdvm/job:latest"
    for image in (tagged, tagged + "@sha256:" + "ab" * 32):
        bad_image = run_cli(
            "submit",
            "--provider",
            "ab" * 32,
            "--relay",
            "ws://127.0.0.1:1",
            "--model",
            "m",
            "--trust-image",
            image,
            "--prompt",
            "x",
        )
        assert bad_image.returncode == 2, bad_image.stderr
        assert "--trust-image" in bad_image.stderr
        assert "tags are refused" in bad_image.stderr
        assert image in bad_image.stderr


def test_cli_times_out_with_exit_3_when_no_provider_answers(relay: RelayProcess) -> None:
    result = run_cli(
        "submit",
        "--provider",
        "ab" * 32,
        "--relay",
        relay.url,
        "--model",
        "m",
        "--tee",
        "simulated",
        "--timeout",
        "2",
        "--prompt",
        "x",
    )
    assert result.returncode == 3, result.stderr
    assert "timeout" in result.stderr
    assert "[1/6] request published" in result.stderr
    # --prompt still works, and says the text was visible to other local users
    assert result.stderr.startswith("cdvm submit: warning: --prompt puts the input on the ")
    assert "/proc/PID/cmdline" in result.stderr


def test_cli_submit_with_a_terminal_and_no_input_is_a_usage_error() -> None:
    """Nothing given and stdin a terminal: nobody is typing, so say how instead of waiting."""
    main, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "dvm.cli", "submit"),
                *("--provider", "ab" * 32, "--relay", "ws://127.0.0.1:1", "--model", "m"),
            ],
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO,
        )
    finally:
        os.close(main)
        os.close(terminal)
    assert result.returncode == 2, result.stderr
    assert "no input: pipe it on standard input (echo TEXT | cdvm submit" in result.stderr
    assert "--input FILE" in result.stderr


def test_cli_refuses_an_untrusted_simulated_root_with_exit_1(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    relays = [relay_factory()]
    node = node_factory(relays, [onnx_model])
    canary = str(_canary_number())
    args = job_args(node, relays, ONNX_NAME)
    without_trust = [a for a in args if a != str(node.sim_root) and a != "--trust-simulated"]
    result = run_cli("submit", *without_trust, "--prompt", _tensor(int(canary)))
    assert result.returncode == 1, result.stderr
    assert "REFUSED" in result.stderr
    assert "UntrustedRoot" in result.stderr
    assert "SIMULATED" in result.stderr
    assert result.stdout == ""
    _assert_nowhere(canary, node, relays)
