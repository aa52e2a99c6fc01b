"""Status lines and exit codes (docs/launch.md §2-§3): the contract both sides import."""

from __future__ import annotations

import ast
import contextlib
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from container.launch import (
    MAX_STATUS_LINE_BYTES,
    REASON_EXIT_CODES,
    DestroyReason,
    ExitCode,
    StatusKind,
    StatusLine,
    build_status_line,
    parse_status_line,
)
from container.launch import status as status_module

C = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
LAUNCH_MD = Path(__file__).resolve().parents[4] / "docs" / "launch.md"


def test_status_lines_parse() -> None:
    attested = parse_status_line(
        json.dumps({"status": "attested", "container": C, "attestation": "ab" * 32}).encode()
    )
    assert (attested.kind, attested.container, attested.attestation) == (
        StatusKind.ATTESTED,
        C,
        "ab" * 32,
    )
    assert parse_status_line(b'{"status":"ready"}').kind is StatusKind.READY
    delivered = parse_status_line(json.dumps({"status": "delivered", "result": "cd" * 32}).encode())
    assert delivered.result == "cd" * 32
    destroying = parse_status_line(b'{"status":"destroying","reason":"idle-timeout"}')
    assert destroying.reason is DestroyReason.IDLE_TIMEOUT


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"hello",
        b"[]",
        b'{"status":"exploded"}',
        b'{"status":"attested","container":"xyz","attestation":"' + b"ab" * 32 + b'"}',
        b'{"status":"attested","container":"' + C.encode() + b'"}',
        b'{"status":"delivered"}',
        b'{"status":"destroying","reason":"bored"}',
        b'{"status":"ready","pad":"' + b"x" * 5000 + b'"}',
    ],
)
def test_bad_status_lines_raise_value_error(line: bytes) -> None:
    with pytest.raises(ValueError, match="status line"):
        parse_status_line(line)


@given(st.binary(max_size=300))
def test_garbage_status_lines_raise_only_value_error(line: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_status_line(line)


@pytest.mark.parametrize(
    ("line", "wire"),
    [
        (
            StatusLine(StatusKind.ATTESTED, container=C, attestation="ab" * 32),
            '{"status":"attested","container":"' + C + '","attestation":"' + "ab" * 32 + '"}',
        ),
        (StatusLine(StatusKind.READY), '{"status":"ready"}'),
        (
            StatusLine(StatusKind.DELIVERED, result="cd" * 32),
            '{"status":"delivered","result":"' + "cd" * 32 + '"}',
        ),
        (
            StatusLine(StatusKind.DESTROYING, reason=DestroyReason.ATTESTATION_TIMEOUT),
            '{"status":"destroying","reason":"attestation-timeout"}',
        ),
    ],
)
def test_the_wire_form_of_each_kind(line: StatusLine, wire: str) -> None:
    # Byte for byte what the container wrote before the contract had one home.
    assert build_status_line(line) == wire
    assert parse_status_line(wire.encode()) == line


_HEX = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_LINES = st.one_of(
    st.builds(lambda c, a: StatusLine(StatusKind.ATTESTED, container=c, attestation=a), _HEX, _HEX),
    st.just(StatusLine(StatusKind.READY)),
    st.builds(lambda r: StatusLine(StatusKind.DELIVERED, result=r), _HEX),
    st.builds(
        lambda r: StatusLine(StatusKind.DESTROYING, reason=r), st.sampled_from(DestroyReason)
    ),
)


@given(_LINES)
def test_build_then_parse_round_trips(line: StatusLine) -> None:
    wire = build_status_line(line)
    assert "\n" not in wire
    assert len(wire.encode()) <= MAX_STATUS_LINE_BYTES
    assert parse_status_line(wire.encode()) == line


@pytest.mark.parametrize(
    "line",
    [
        StatusLine(StatusKind.ATTESTED, container=C),  # no attestation
        StatusLine(StatusKind.ATTESTED, container="C" * 64, attestation="ab" * 32),  # not hex
        StatusLine(StatusKind.DELIVERED),
        StatusLine(StatusKind.DESTROYING),
        StatusLine(StatusKind.READY, result="cd" * 32),  # a field its kind does not carry
        StatusLine(StatusKind.DESTROYING, reason=DestroyReason.END, container=C),
    ],
)
def test_build_refuses_what_a_launcher_would_not_read(line: StatusLine) -> None:
    with pytest.raises(ValueError, match="status line"):
        build_status_line(line)


def test_every_reason_has_its_exit_codes_and_every_code_a_reason() -> None:
    assert set(REASON_EXIT_CODES) == set(DestroyReason)
    assert set().union(*REASON_EXIT_CODES.values()) == set(ExitCode)
    # Only a normal end exits 0.
    ok = {reason for reason, codes in REASON_EXIT_CODES.items() if ExitCode.OK in codes}
    assert ok == {DestroyReason.END, DestroyReason.ONESHOT}


def test_docs_launch_md_lists_exactly_these_codes_and_reasons() -> None:
    text = LAUNCH_MD.read_text(encoding="utf-8")
    codes = {int(code) for code in re.findall(r"^\| (\d+) \|", text, flags=re.MULTILINE)}
    assert codes == {int(code) for code in ExitCode}
    reasons = re.search(r"`reason` is one of ([^|]+)\|", text)
    assert reasons is not None
    assert set(re.findall(r"`([a-z-]+)`", reasons.group(1))) == {r.value for r in DestroyReason}
    kinds = set(re.findall(r'^\| `\{"status":"([a-z]+)"', text, flags=re.MULTILINE))
    assert kinds == {k.value for k in StatusKind}


def test_the_status_module_imports_the_standard_library_only() -> None:
    # The node's fake container runs it alone, without the rest of the runtime.
    tree = ast.parse(Path(status_module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    assert imported - {"__future__"} <= sys.stdlib_module_names
