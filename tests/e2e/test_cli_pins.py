"""Fail-closed pins through the real CLI, a real relay and a real node (simulated TEE).

``cdvm submit`` sends nothing unless the measurement and the model sha256 are each pinned: by a
flag, or by the reference values (kind 37100) of a publisher the requester trusts, published
with ``cdvm refs publish`` to the job's relay and trusted with ``cdvm trust add``. Every job here
uses ``--wrap-kind 1059`` (stored gift wraps), so "nothing was sent" is read from the relay's
database: no gift wrap addressed to the container C exists. The accepted jobs are the positive
control: their wraps to C are there.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from attestation.simulated import measure_runtime
from dvm.cli.embedded_relay import DATABASE_FILE_NAME
from tests.integration.conftest import RelayFactory, RelayProcess

from .conftest import (
    ONNX_NAME,
    Model,
    Node,
    NodeFactory,
    model_sha256,
    run_cli,
    runtime_measurement,
)

pytestmark = pytest.mark.relay


def runtime_measurement_of(root: Path) -> str:
    return measure_runtime(root).hex()


_INPUT = json.dumps({"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [7]}}})


@dataclass
class Stack:
    relay: RelayProcess
    node: Node
    directory: Path

    @property
    def trust_file(self) -> Path:
        return self.directory / "trust.toml"

    def keygen(self, name: str) -> tuple[Path, str]:
        path = self.directory / f"{name}.nsec"
        made = run_cli("keygen", "--out", str(path))
        assert made.returncode == 0, made.stderr
        return path, made.stdout.strip()

    def publish(self, key: Path, *extra: str) -> str:
        sha = model_sha256(self.node, ONNX_NAME)
        done = run_cli(
            "refs", "publish", "--key", str(key), "--relay", self.relay.url, "--simulated",
            "--model", f"{ONNX_NAME}={sha}", "--source-repo", "https://example.org/cdvm.git",
            "--source-commit", "5" * 40, *extra,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "published reference values 37100:" in done.stdout
        return done.stdout

    def trust(self, npub: str) -> None:
        done = run_cli("trust", "add", npub, "--config", str(self.trust_file))
        assert done.returncode == 0, done.stderr

    def submit(self, *extra: str) -> tuple[int, str, str]:
        args = ["submit", "--provider", self.node.npub, "--model", ONNX_NAME, "--tee", "simulated"]
        args += ["--trust-simulated", str(self.node.sim_root), "--timeout", "120"]
        args += ["--relay", self.relay.url, "--wrap-kind", "1059"]
        args += ["--trust-config", str(self.trust_file), "--input", str(self.input_file)]
        done = run_cli(*args, *extra)
        return done.returncode, done.stdout, done.stderr

    @property
    def input_file(self) -> Path:
        path = self.directory / "input.json"
        path.write_text(_INPUT)
        return path

    def wraps_to(self, container: str) -> int:
        """Gift wraps (1059) addressed to ``container`` in the relay's database."""
        database = self.relay.settings.data_dir / DATABASE_FILE_NAME
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT tags FROM events WHERE kind = 1059").fetchall()
        return sum(1 for (tags,) in rows if ["p", container] in json.loads(tags))


@pytest.fixture
def stack(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model, tmp_path: Path
) -> Stack:
    relay = relay_factory()
    return Stack(relay, node_factory([relay], [onnx_model]), tmp_path)


def _container(stderr: str) -> str:
    found = re.search(r"container launched: container ([0-9a-f]{64})", stderr)
    assert found is not None, stderr
    return found.group(1)


def _refused(stack: Stack, code: int, stdout: str, stderr: str) -> str:
    assert code == 1, stderr
    assert "REFUSED" in stderr
    assert stdout == ""
    assert "input sent" not in stderr
    assert stack.wraps_to(_container(stderr)) == 0  # nothing left for C
    return stderr


def _unpinned_measurement(stderr: str) -> str:
    """The measurement a refusal names (the report's; a shared checkout may change under a
    test, so it is read from the refusal rather than recomputed afterwards)."""
    found = re.search(r"measurement ([0-9a-f]{96}) is not pinned", stderr)
    assert found is not None, stderr
    return found.group(1)


def test_no_pins_and_no_publisher_refuse_before_any_input_leaves(stack: Stack) -> None:
    stderr = _refused(stack, *stack.submit())
    measurement, sha = _unpinned_measurement(stderr), model_sha256(stack.node, ONNX_NAME)
    assert f"measurement {measurement} is not pinned: you trust no reference-value publisher" in (
        stderr
    )
    assert f"Pin it with --measurement {measurement}" in stderr
    assert f"Pin it with --model-sha256 {sha}" in stderr
    assert "cdvm trust add NPUB" in stderr
    assert "--accept-unpinned measurement" in stderr


def test_a_trusted_publishers_reference_values_let_the_job_proceed(stack: Stack) -> None:
    key, npub = stack.keygen("publisher")
    stack.publish(key, "--release", "e2e")
    stack.trust(npub)
    code, stdout, stderr = stack.submit()
    assert code == 0, stderr + stack.node.log_text()[-3000:]
    assert json.loads(stdout)["outputs"]["y"]["data"] == [7]
    assert "reference values: 1 release(s) from 1 of your 1 trusted publisher(s)" in stderr
    assert (
        f"checked: measurement matches reference values published by {npub} (release e2e): "
        f"{runtime_measurement()}" in stderr
    )
    assert (
        f"checked: model sha256 matches reference values published by {npub} (release e2e): "
        f"{model_sha256(stack.node, ONNX_NAME)}" in stderr
    )
    assert stack.wraps_to(_container(stderr)) >= 1  # the control: the input did reach C
    shown = run_cli("refs", "show", "--relay", stack.relay.url, "--publisher", npub)
    assert shown.returncode == 0, shown.stderr
    assert f"{npub} release 'e2e': tee simulated" in shown.stdout
    assert f"measurement {runtime_measurement()}" in shown.stdout
    as_json = run_cli("refs", "show", "--relay", stack.relay.url, "--json")
    assert as_json.returncode == 0, as_json.stderr
    (listed,) = json.loads(as_json.stdout)["references"]
    assert listed["publisher"] == npub
    assert listed["event"]["kind"] == 37100


def test_a_publisher_the_requester_does_not_trust_is_refused(stack: Stack) -> None:
    key, _ = stack.keygen("stranger")
    stack.publish(key)
    _, friend = stack.keygen("friend")  # trusted, but published nothing
    stack.trust(friend)
    stderr = _refused(stack, *stack.submit())
    assert "none of your 1 trusted publisher(s) published reference values" in stderr


def test_a_reference_that_disagrees_is_refused(stack: Stack, tmp_path: Path) -> None:
    other = tmp_path / "other-runtime"
    (other / "container").mkdir(parents=True)
    (other / "container" / "__init__.py").write_text("# another runtime\n")
    key, npub = stack.keygen("publisher")
    stack.publish(key, "--root", str(other))
    stack.trust(npub)
    stderr = _refused(stack, *stack.submit())
    assert _unpinned_measurement(stderr) != runtime_measurement_of(other)
    assert "the reference values of 1 trusted publisher(s) for this TEE name other" in stderr
    assert "model sha256" not in stderr.split("REFUSED", 1)[1]  # the model is vouched for


def test_require_publishers_counts_independent_publishers(stack: Stack) -> None:
    key, npub = stack.keygen("publisher")
    stack.publish(key)
    stack.trust(npub)
    stderr = _refused(stack, *stack.submit("--require-publishers", "2"))
    assert f"1 trusted publisher(s) vouch for it ({npub}), 2 required" in stderr


def test_explicit_flags_pin_without_any_publisher(stack: Stack) -> None:
    measurement, sha = runtime_measurement(), model_sha256(stack.node, ONNX_NAME)
    code, stdout, stderr = stack.submit("--measurement", measurement, "--model-sha256", sha)
    assert code == 0, stderr + stack.node.log_text()[-3000:]
    assert json.loads(stdout)["outputs"]["y"]["data"] == [7]
    assert f"checked: measurement is pinned with --measurement: {measurement}" in stderr
    assert f"checked: model sha256 is pinned with --model-sha256: {sha}" in stderr
    assert stack.wraps_to(_container(stderr)) >= 1


def test_accept_unpinned_is_loud(stack: Stack) -> None:
    code, _, stderr = stack.submit(
        "--model-sha256", model_sha256(stack.node, ONNX_NAME), "--accept-unpinned", "measurement"
    )
    assert code == 0, stderr
    assert "WARNING: --accept-unpinned measurement" in stderr
    assert "note: UNPINNED measurement accepted (--accept-unpinned measurement)" in stderr
