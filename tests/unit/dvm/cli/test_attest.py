"""`cdvm attest` internals: input detection (garbage -> ParseError only) and the lazy import."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.errors import ParseError
from dvm.cli import attest as attest_command
from dvm.cli.attest import EXIT_UNUSABLE, RawReport, read_input

SNP = Path(__file__).resolve().parents[3] / "vectors" / "snp"


def test_detects_binary_and_hex_reports() -> None:
    binary = (SNP / "trustee-milan-v2" / "test-report.bin").read_bytes()[:1184]
    assert read_input(binary) == RawReport(binary)
    hex_text = (SNP / "virtee-milan-v2" / "report_milan.hex").read_bytes()
    assert read_input(hex_text) == RawReport(bytes.fromhex(hex_text.decode().strip()))
    spaced = " \n".join(binary.hex()[i : i + 64] for i in range(0, 2368, 64)).encode()
    assert read_input(spaced) == RawReport(binary)


@pytest.mark.parametrize(
    "data",
    [b"{", b"{}", b'{"sig": 1, "kind": 7100}', b"zz", b"\xff\xfe", b"00" * 100, b"[]"],
)
def test_unusable_inputs(data: bytes) -> None:
    with pytest.raises(ParseError):
        read_input(data)


@settings(max_examples=500)
@given(st.binary(max_size=3000))
def test_garbage_bytes_raise_parse_error_only(data: bytes) -> None:
    with pytest.raises(ParseError):
        read_input(data)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["kind", "sig", "v", "claims", "evidence", "x"]), inner, max_size=5
        )
    ),
    max_leaves=15,
)


@settings(max_examples=300)
@given(JSONISH)
def test_garbage_json_raises_parse_error_only(value: Any) -> None:
    with pytest.raises(ParseError):
        read_input(json.dumps(value).encode())


def measure_args(**kw: Any) -> argparse.Namespace:
    base = {
        "simulated": False,
        "root": None,
        "ovmf": "OVMF.fd",
        "kernel": None,
        "initrd": None,
        "append": None,
        "vcpus": 1,
        "vcpu_type": "EPYC-Milan",
        "guest_features": 1,
    }
    return argparse.Namespace(**(base | kw))


def test_missing_sev_snp_measure_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_package(name: str) -> Any:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", no_package)
    assert attest_command._cmd_measure(measure_args()) == EXIT_UNUSABLE
    assert "pip install 'sev-snp-measure" in capsys.readouterr().err


def test_measure_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sevsnpmeasure")
    ovmf = tmp_path / "OVMF.fd"
    ovmf.write_bytes(bytes(4096))  # no footer table: no SEV-ES reset block
    assert attest_command._cmd_measure(measure_args(ovmf=str(ovmf))) == EXIT_UNUSABLE
    assert "RuntimeError" in capsys.readouterr().err
