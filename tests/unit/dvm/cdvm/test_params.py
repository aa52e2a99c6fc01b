"""Job parameter rules (dvm.cdvm.params): the table, and node and container applying it alike."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from container.errors import SpecError
from container.launch import ModelSpec, RunnerKind
from container.runner import GenerationParams, load_runner
from dvm.cdvm.params import (
    DEFAULT_PARAMS,
    MODES,
    PARAMS,
    REQUEST_PARAMS,
    Applies,
    Kind,
    ParamError,
    ParamRule,
    Scope,
    check_default,
    check_param,
    load_options,
    parse_default,
)
from dvm.node.admission import Admission
from dvm.node.config import NodeConfig, parse_config
from dvm.node.errors import ConfigError
from dvm.node.intake import Accepted, screen
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.nip90 import parse_job_request
from tests.unit.dvm.node.conftest import NOW, config_document, key


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


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@given(st.sampled_from([*PARAMS, "x"]), toml_values)
def test_garbage_defaults_raise_only_param_error(name: str, value: object) -> None:
    with contextlib.suppress(ParamError):
        check_default(name, value, max_output_tokens=1024)
    with contextlib.suppress(ParamError):
        load_options({name: value}, runner="llama")


# --- the table ------------------------------------------------------------------------------


def test_the_table_is_the_documented_one() -> None:
    rows = {
        name: (rule.kind, rule.scope, rule.runner, rule.low, rule.high, rule.low_open)
        for name, rule in PARAMS.items()
    }
    either, llama = Scope.EITHER, Applies.LLAMA
    assert rows == {
        "model": (Kind.TEXT, Scope.REQUEST, Applies.ANY, 0, None, False),
        "mode": (Kind.CHOICE, Scope.REQUEST, Applies.ANY, 0, None, False),
        "max_tokens": (Kind.INTEGER, either, llama, 1, None, False),
        "temperature": (Kind.NUMBER, either, llama, 0, 2, False),
        "top_p": (Kind.NUMBER, either, llama, 0, 1, True),
        "top_k": (Kind.INTEGER, either, llama, 0, 1000, False),
        "seed": (Kind.INTEGER, either, llama, 0, 2**31 - 1, False),
        "n_ctx": (Kind.INTEGER, Scope.DEFAULTS, llama, 1, 2**20, False),
        "n_threads": (Kind.INTEGER, Scope.DEFAULTS, llama, 1, 1024, False),
    }
    assert PARAMS["mode"].choices == MODES == ("oneshot", "chat")
    assert {
        "model",
        "mode",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
    } == REQUEST_PARAMS
    assert {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "n_ctx",
        "n_threads",
    } == DEFAULT_PARAMS


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("n_ctx", "4096", "'n_ctx' is set only by the provider's model defaults"),
        ("n_threads", "2", "'n_threads' is set only by the provider's model defaults"),
    ],
)
def test_load_options_are_not_request_parameters(name: str, value: str, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        check_param(name, value, max_output_tokens=64)


def test_model_and_mode_are_not_defaults() -> None:
    # The container reads both from the request only: as defaults nobody would apply them.
    for name, value in (("model", "m"), ("mode", "oneshot")):
        with pytest.raises(ParamError, match="set only by the request"):
            check_default(name, value, max_output_tokens=64)


def test_defaults_are_typed_toml_values() -> None:
    assert parse_default("n_ctx", 4096, max_output_tokens=64) == 4096
    assert parse_default("temperature", 1, max_output_tokens=64) == 1.0
    assert parse_default("temperature", 1e-5, max_output_tokens=64) == 1e-5
    assert parse_default("top_k", "40", max_output_tokens=64) == 40  # a string reads as a tag
    with pytest.raises(ParamError, match="temperature"):
        check_default("temperature", 10**400, max_output_tokens=64)  # JSON ints have no bound
    for name, value in (("top_k", 40.0), ("n_ctx", 0), ("n_ctx", 2**20 + 1), ("n_threads", 0)):
        with pytest.raises(ParamError, match=name):
            check_default(name, value, max_output_tokens=64)
    with pytest.raises(ParamError, match="decimal number"):
        check_default("temperature", "nan", max_output_tokens=64)
    with pytest.raises(ParamError, match=r"from 0\.0 up to 2\.0"):
        check_default("temperature", math.nan, max_output_tokens=64)


def test_load_options_are_the_runners_own() -> None:
    defaults = {"n_ctx": 4096, "n_threads": 2, "temperature": 0.5}
    assert load_options(defaults, runner="llama") == {"n_ctx": 4096, "n_threads": 2}
    assert load_options(defaults, runner="onnx") == {}
    with pytest.raises(ParamError, match="'n_ctx'"):
        load_options({"n_ctx": "big"}, runner="llama")


# --- node and container accept exactly the same parameters ------------------------------------
#
# Cases are generated from the table: for every row, values in range, at the bounds, just
# outside, of the wrong type, plus unknown names; each with the table's expected verdict. The
# node's side is its real intake (``screen``) for a request and its config parser for a
# model's ``defaults``; the container's side is its real path (``parse_job_request`` and
# ``GenerationParams.from_sources`` in ``container.job``, then ``load_runner``'s load options),
# with the defaults as the JSON copy the job spec carries.

LIMIT = 1024  # limits.max_output_tokens of the test config (the default)


def _decimal(number: float) -> str:
    return f"{number:f}".rstrip("0").rstrip(".") if number != int(number) else str(int(number))


def _text_cases(rule: ParamRule) -> list[tuple[str, bool]]:
    if rule.kind is Kind.TEXT:
        return []  # ``model``: the node checks it against the served models (see below)
    if rule.kind is Kind.CHOICE:
        return [*((c, True) for c in rule.choices), ("other", False), ("CHAT", False), ("", False)]
    low, high = rule.low, LIMIT if rule.high is None else rule.high
    garbage = [("", False), ("x", False), ("1e3", False), ("+1", False), (" 1", False)]
    if rule.kind is Kind.INTEGER:
        return [
            (str(low), True),
            (str(high), True),
            (str((low + high) // 2), True),
            (str(low - 1), False),
            (str(high + 1), False),
            (f"{high}.0", False),
            (f"0{high}", False),
            *garbage,
        ]
    return [
        (str(low), not rule.low_open),
        (_decimal(low + 0.001), True),
        (str(high), True),
        (f"{high}.0", True),
        (_decimal((low + high) / 2), True),
        (_decimal(low - 0.001), False),
        (_decimal(high + 0.001), False),
        ("nan", False),
        ("inf", False),
        (".5", False),
        *garbage,
    ]


def _value_cases(rule: ParamRule) -> list[tuple[object, bool]]:
    cases: list[tuple[object, bool]] = list(_text_cases(rule))
    wrong: list[tuple[object, bool]] = [(True, False), (False, False), ([1], False), ({}, False)]
    if rule.kind is Kind.CHOICE:
        return [*cases, (1, False), *wrong]
    if rule.kind is Kind.TEXT:
        return [("anything", True), (1, False), *wrong]
    low, high = rule.low, LIMIT if rule.high is None else rule.high
    typed: list[tuple[object, bool]] = [
        (low, not rule.low_open),
        (high, True),
        (low - 1, False),
        (high + 1, False),
        (math.nan, False),
        (math.inf, False),
    ]
    if rule.kind is Kind.INTEGER:
        typed += [(float(high), False), (float(low) + 0.5, False)]
    else:
        typed += [(float(high), True), (low + 1e-6, True), (high + 1e-6, False)]
    return [*cases, *typed, *wrong]


REQUEST_CASES = [
    (name, text, expected and rule.scope is not Scope.DEFAULTS)
    for name, rule in PARAMS.items()
    for text, expected in _text_cases(rule)
] + [
    ("model", "tiny", True),  # the served model; other names are the node's unsupported-model
    ("colour", "red", False),
    ("MAX_TOKENS", "8", False),
    ("max-tokens", "8", False),
    ("n_ctx", "4096", False),
    ("n_threads", "2", False),
]
DEFAULT_CASES = [
    (name, value, expected and rule.scope is not Scope.REQUEST)
    for name, rule in PARAMS.items()
    for value, expected in _value_cases(rule)
] + [("colour", 1, False), ("MAX_TOKENS", 8, False), ("", 8, False)]


def _request(name: str, value: str) -> Event:
    requester, provider = key(2), key(1)
    params = [("param", "model", "tiny")] if name != "model" else []
    tags = (
        ("p", provider.public_key.hex()),
        ("tee", "simulated"),
        ("nonce", "11" * 32),
        *params,
        ("param", name, value),
    )
    unsigned = UnsignedEvent(requester.public_key.hex(), NOW, 5050, tags, "")
    return unsigned.sign(requester, aux_rand=bytes(32))


def _node_admits(config: NodeConfig, event: Event) -> bool:
    decision = screen(
        event, config=config, admission=Admission(config.limits), running_jobs=0, now=NOW
    )
    return isinstance(decision, Accepted)


def _container_accepts_request(event: Event) -> bool:
    try:
        request = parse_job_request(event)
        GenerationParams.from_sources({}, request.params, max_output_tokens=LIMIT)
    except (NostrError, SpecError):
        return False
    return True


def _node_accepts_default(
    document: dict[str, Any], tmp_path: Path, name: str, value: object
) -> bool:
    document = copy.deepcopy(document)
    document["models"][0]["runner"] = "llama"
    document["models"][0]["defaults"] = {name: value}
    try:
        parse_config(document, base_dir=tmp_path)
    except ConfigError:
        return False
    return True


def _container_accepts_default(name: str, value: object) -> bool:
    defaults = json.loads(json.dumps({name: value}))  # the job spec's copy
    try:
        GenerationParams.from_sources(defaults, (), max_output_tokens=LIMIT)
        load_options(defaults, runner=RunnerKind.LLAMA)
    except (SpecError, ParamError):
        return False
    return True


def test_the_cases_cover_every_row() -> None:
    assert {c[0] for c in REQUEST_CASES} >= set(PARAMS)
    assert {c[0] for c in DEFAULT_CASES} >= set(PARAMS)
    for cases in (REQUEST_CASES, DEFAULT_CASES):
        assert {c[2] for c in cases} == {True, False}


def test_node_and_container_accept_the_same_requests(tmp_path: Path) -> None:
    config = parse_config(config_document(tmp_path), base_dir=tmp_path)
    assert config.limits.max_output_tokens == LIMIT
    verdicts = []
    for name, text, expected in REQUEST_CASES:
        event = _request(name, text)
        verdicts.append(
            (name, text, expected, _node_admits(config, event), _container_accepts_request(event))
        )
    wrong = [v for v in verdicts if not v[2] == v[3] == v[4]]
    assert wrong == [], "(name, value, table, node, container)"


def test_node_and_container_accept_the_same_defaults(tmp_path: Path) -> None:
    document = config_document(tmp_path)
    verdicts = [
        (
            name,
            value,
            expected,
            _node_accepts_default(document, tmp_path, name, value),
            _container_accepts_default(name, value),
        )
        for name, value, expected in DEFAULT_CASES
    ]
    wrong = [v for v in verdicts if not v[2] == v[3] == v[4]]
    assert wrong == [], "(name, value, table, node, container)"


# --- a provider's load option reaches the llama runner -----------------------------------------


class _FakeLlama:
    loaded: ClassVar[list[dict[str, object]]] = []

    def __init__(self, **kwargs: object) -> None:
        _FakeLlama.loaded.append(kwargs)


def test_n_ctx_in_provider_toml_reaches_the_llama_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = config_document(tmp_path)
    document["models"][0]["runner"] = "llama"
    document["models"][0]["defaults"] = tomllib.loads("n_ctx = 4096\nn_threads = 2\ntop_k = 1\n")
    model = parse_config(document, base_dir=tmp_path).models[0]
    # What the launchers put in the job spec (dvm.node.local.launcher), through its JSON.
    spec = ModelSpec(model.name, model.runner, str(model.path), model.sha256, dict(model.defaults))
    defaults = json.loads(json.dumps(dict(spec.defaults)))
    params = GenerationParams.from_sources(defaults, (), max_output_tokens=LIMIT)
    assert params.top_k == 1
    monkeypatch.setitem(sys.modules, "llama_cpp", SimpleNamespace(Llama=_FakeLlama))
    _FakeLlama.loaded.clear()
    load_runner(dataclasses.replace(spec, defaults=defaults), params=params)
    (kwargs,) = _FakeLlama.loaded
    assert kwargs["n_ctx"] == 4096
    assert kwargs["n_threads"] == 2
    # Every load option of the table reaches llama.cpp under its own name.
    for name, rule in PARAMS.items():
        if rule.scope is Scope.DEFAULTS and rule.runner is Applies.LLAMA:
            assert name in kwargs
