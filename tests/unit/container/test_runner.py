"""Generation parameters, the load options and the model sha256 check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from container.errors import ModelError, SpecError
from container.launch import ModelSpec, RunnerKind
from container.runner import GenerationParams, check_model_file, load_runner


def test_request_params_override_defaults_and_max_tokens_is_capped() -> None:
    params = GenerationParams.from_sources(
        {"max_tokens": 50, "temperature": 0.2, "top_k": 5},
        (("model", "m"), ("temperature", "0.7"), ("seed", "42"), ("max_tokens", "100")),
        max_output_tokens=100,
    )
    assert params == GenerationParams(max_tokens=100, temperature=0.7, top_p=0.95, top_k=5, seed=42)
    # Above the cap is refused, not capped: the node refuses it too (dvm.cdvm.params), and a
    # requester must not believe in a length nobody honoured.
    with pytest.raises(SpecError, match="max_tokens"):
        GenerationParams.from_sources({}, (("max_tokens", "9000"),), max_output_tokens=100)


def test_defaults_apply_without_params() -> None:
    params = GenerationParams.from_sources({}, (), max_output_tokens=64)
    assert params == GenerationParams(max_tokens=64)
    assert params.seed is None


@pytest.mark.parametrize(
    ("params", "defaults", "word"),
    [
        ((("temperature", "hot"),), {}, "temperature"),
        ((("top_p", "0"),), {}, "top_p"),
        ((("top_p", "1.5"),), {}, "top_p"),
        ((("top_k", "-1"),), {}, "top_k"),
        ((("max_tokens", "0"),), {}, "max_tokens"),
        ((("max_tokens", "1.5"),), {}, "max_tokens"),
        ((("seed", "-3"),), {}, "seed"),
        ((("temperature", "nan"),), {}, "temperature"),
        ((), {"top_k": True}, "top_k"),
        ((), {"colour": "blue"}, "unknown"),
    ],
)
def test_bad_parameters_are_named(
    params: tuple[tuple[str, str], ...], defaults: dict[str, object], word: str
) -> None:
    with pytest.raises(SpecError, match=word):
        GenerationParams.from_sources(defaults, params, max_output_tokens=10)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["max_tokens", "temperature", "top_p", "top_k", "seed", "x"]),
            st.text(max_size=12),
        ),
        max_size=6,
    )
)
def test_garbage_params_raise_only_spec_errors(params: list[tuple[str, str]]) -> None:
    try:
        got = GenerationParams.from_sources({}, tuple(params), max_output_tokens=32)
    except SpecError:
        return
    assert 1 <= got.max_tokens <= 32


def test_model_file_hash_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"model bytes")
    good = hashlib.sha256(b"model bytes").hexdigest()
    check_model_file(path, good)
    with pytest.raises(ModelError, match="sha256"):
        check_model_file(path, "0" * 64)
    with pytest.raises(ModelError, match=r"m\.bin"):
        check_model_file(tmp_path / "missing" / "m.bin", good)


def test_load_runner_checks_the_hash_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not a model at all")
    spec = ModelSpec("m", RunnerKind.ONNX, str(path), "0" * 64)
    with pytest.raises(ModelError, match="sha256"):
        load_runner(spec, params=GenerationParams(max_tokens=1))
    right = ModelSpec(
        "m", RunnerKind.ONNX, str(path), hashlib.sha256(path.read_bytes()).hexdigest()
    )
    with pytest.raises(ModelError, match="onnxruntime could not load"):
        load_runner(right, params=GenerationParams(max_tokens=1))
