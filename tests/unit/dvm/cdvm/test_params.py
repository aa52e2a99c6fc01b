"""Job parameter rules (dvm.cdvm.params)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.cdvm.params import ParamError, check_default, check_param


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("model", "anything"),
        ("mode", "oneshot"),
        ("mode", "chat"),
        ("max_tokens", "1"),
        ("max_tokens", "64"),
        ("temperature", "0"),
        ("temperature", "0.7"),
        ("temperature", "2"),
        ("top_p", "1"),
        ("top_p", "0.01"),
        ("top_k", "0"),
        ("seed", "2147483647"),
    ],
)
def test_valid(name: str, value: str) -> None:
    check_param(name, value, max_output_tokens=64)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("colour", "red", "unknown parameter 'colour'"),
        ("mode", "stream", "'mode' must be one of"),
        ("max_tokens", "65", "from 1 to 64"),
        ("max_tokens", "0", "from 1 to 64"),
        ("max_tokens", "1.5", "integer"),
        ("max_tokens", "007", "integer"),
        ("temperature", "2.1", "up to 2.0"),
        ("temperature", "-0.1", "from 0.0"),
        ("temperature", "nan", "decimal number"),
        ("temperature", "1e3", "decimal number"),
        ("top_p", "0", "above 0.0"),
        ("top_k", "1001", "0 to 1000"),
        ("seed", "-1", "0 to 2147483647"),
        ("seed", "2147483648", "0 to 2147483647"),
    ],
)
def test_invalid(name: str, value: str, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        check_param(name, value, max_output_tokens=64)


def test_defaults_use_toml_values() -> None:
    check_default("temperature", 0.7, max_output_tokens=64)
    check_default("max_tokens", 64, max_output_tokens=64)
    for name, value in (("model", "x"), ("max_tokens", True), ("top_k", [1]), ("seed", -1)):
        with pytest.raises(ParamError):
            check_default(name, value, max_output_tokens=64)


@given(st.text(max_size=10), st.text(max_size=30))
def test_garbage_raises_only_param_error(name: str, value: str) -> None:
    with contextlib.suppress(ParamError):
        check_param(name, value, max_output_tokens=1024)
