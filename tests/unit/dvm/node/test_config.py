"""Config parsing and checking: every error names its key; files are checked at load."""

from __future__ import annotations

import contextlib
import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.node.config import LauncherKind, load_config, load_secret_key, parse_config
from dvm.node.errors import ConfigError
from dvm.nostr.nip19 import encode_npub, encode_nsec
from tests.unit.dvm.node.conftest import key

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "provider.toml"


def _set(doc: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target: Any = doc
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()


def test_valid_document_parses(document: dict[str, Any], tmp_path: Path) -> None:
    config = parse_config(document, base_dir=tmp_path)
    assert config.relays == ("ws://127.0.0.1:1",)
    assert config.tee.kinds == ("simulated",)
    assert config.launcher.kind is LauncherKind.LOCAL
    assert config.launcher.allow_unsandboxed is False
    assert config.model("tiny") is not None
    assert config.model("other") is None
    assert config.limits.allowed_requesters is None


@pytest.mark.parametrize(
    ("dotted", "value", "names"),
    [
        ("extra", 1, "unknown top-level key(s): extra"),
        ("node.colour", "blue", "node has unknown key(s): colour"),
        ("node.key_file", _DELETE, "node.key_file is required"),
        ("node.key_file", "", "node.key_file must be a non-empty string"),
        ("node.data_dir", 3, "node.data_dir must be a non-empty string"),
        ("node.relays", [], "node.relays must be a non-empty list"),
        ("node.relays", ["http://x"], "node.relays must hold ws:// or wss://"),
        ("node.kinds", [7000], "node.kinds must hold job request kinds"),
        ("node.kinds", [], "node.kinds must be a non-empty list"),
        ("node.kinds", [True], "node.kinds must hold job request kinds"),
        ("node.identifier", 5, "node.identifier must be a string"),
        ("node.since_lookback_s", -1, "node.since_lookback_s must be an integer >= 0"),
        ("node.name", "", "node.name must be a non-empty string"),
        ("tee", "simulated", "tee must be a table"),
        ("tee.kinds", [], "tee.kinds must be a non-empty list"),
        ("tee.kinds", ["sev-snp"], "tee.kinds: the local launcher offers only simulated"),
        ("tee.kinds", ["tdx"], "tee.kinds: the local launcher offers only"),
        ("launcher.kind", "docker", "launcher.kind must be 'local' or 'kubernetes'"),
        ("launcher.allow_unsandboxed", "yes", "launcher.allow_unsandboxed must be true or false"),
        ("launcher.memory_bytes", 10, "launcher.memory_bytes must be an integer >= 67108864"),
        ("launcher.cpu_time_s", 0, "launcher.cpu_time_s must be an integer >= 1"),
        ("launcher.runtime_root", "", "launcher.runtime_root must be a non-empty string"),
        ("launcher.sandbox", True, "launcher has unknown key(s): sandbox"),
        ("limits.max_concurrent_jobs", 0, "limits.max_concurrent_jobs must be an integer >= 1"),
        ("limits.max_concurrent_jobs", 1.5, "limits.max_concurrent_jobs must be an integer"),
        ("limits.rate_limit_burst", True, "limits.rate_limit_burst must be an integer"),
        ("limits.rate_limit_per_minute", 0, "limits.rate_limit_per_minute must be a positive"),
        ("limits.min_pow_bits", 300, "limits.min_pow_bits must be at most 256"),
        ("limits.min_pow_bits", -1, "limits.min_pow_bits must be an integer >= 0"),
        ("limits.allowed_requesters", "all", "limits.allowed_requesters must be a list"),
        ("limits.allowed_requesters", ["nope"], "limits.allowed_requesters[0] is not a public"),
        ("limits.allowed_requesters", [7], "limits.allowed_requesters[0] must be a string"),
        ("limits.max_request_bytes", 0, "limits.max_request_bytes must be an integer >= 1"),
        ("limits.attestation_timeout_s", 0, "limits.attestation_timeout_s must be a positive"),
        ("limits.idle_timeout_s", "5", "limits.idle_timeout_s must be a positive"),
        ("limits.deadline_s", -3, "limits.deadline_s must be a positive"),
        ("limits.grace_s", 0, "limits.grace_s must be a positive"),
        ("limits.max_input_bytes", 0, "limits.max_input_bytes must be an integer >= 1"),
        ("limits.max_output_tokens", 0, "limits.max_output_tokens must be an integer >= 1"),
        ("limits.burst", 1, "limits has unknown key(s): burst"),
        ("models", [], "models must list at least one"),
        ("models", {"name": "x"}, "models must list at least one"),
        ("models.0", "tiny", "models[0] must be a table"),
        ("models.0.name", "../evil", "models[0].name must match"),
        ("models.0.name", _DELETE, "models[0].name is required"),
        ("models.0.runner", "torch", "models[0].runner must be 'llama' or 'onnx'"),
        ("models.0.sha256", "ABC", "models[0].sha256 must be 64 lowercase hex"),
        ("models.0.path", _DELETE, "models[0].path is required"),
        ("models.0.defaults", 3, "models[0].defaults must be a table"),
        ("models.0.defaults", {"colour": 1}, "models[0].defaults.colour: unknown parameter"),
        ("models.0.defaults", {"temperature": 9}, "models[0].defaults.temperature"),
        ("models.0.defaults", {"max_tokens": 99999}, "models[0].defaults.max_tokens"),
        ("models.0.defaults", {"seed": True}, "models[0].defaults.seed"),
        ("models.0.size", 1, "models[0] has unknown key(s): size"),
    ],
)
def test_every_error_names_its_key(
    document: dict[str, Any], tmp_path: Path, dotted: str, value: object, names: str
) -> None:
    with pytest.raises(ConfigError, match=_escape(names)):
        parse_config(_set(document, dotted, value), base_dir=tmp_path)


def _escape(text: str) -> str:
    return re.escape(text)


def test_two_models_with_one_name_are_refused(document: dict[str, Any], tmp_path: Path) -> None:
    document["models"].append(dict(document["models"][0]))
    with pytest.raises(ConfigError, match="two models have the same name"):
        parse_config(document, base_dir=tmp_path)


def test_kubernetes_launcher_takes_hardware_tees(document: dict[str, Any], tmp_path: Path) -> None:
    doc = _set(_set(document, "launcher.kind", "kubernetes"), "tee.kinds", ["sev-snp"])
    doc = _set(doc, "launcher.kubernetes", {"image": "registry.example/job@sha256:" + "a" * 64})
    doc = _set(doc, "models.0.path", _DELETE)  # in the job image, not on the node
    assert parse_config(doc, base_dir=tmp_path).tee.kinds == ("sev-snp",)
    with pytest.raises(ConfigError, match="kubernetes launcher offers only"):
        parse_config(_set(doc, "tee.kinds", ["simulated"]), base_dir=tmp_path)


def test_allow_list_accepts_npub_and_hex(document: dict[str, Any], tmp_path: Path) -> None:
    npub, hexkey = encode_npub(key(5).public_key), key(6).public_key.hex()
    config = parse_config(
        _set(document, "limits.allowed_requesters", [npub, hexkey]), base_dir=tmp_path
    )
    assert config.limits.allowed_requesters == {key(5).public_key.hex(), hexkey}


def test_relative_paths_resolve_against_the_config_dir(
    document: dict[str, Any], tmp_path: Path
) -> None:
    config = parse_config(_set(document, "node.data_dir", "state/node"), base_dir=tmp_path)
    assert config.data_dir == tmp_path / "state/node"


def _write_toml(tmp_path: Path, doc: dict[str, Any]) -> Path:
    lines: list[str] = []

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    for section in ("node", "tee", "launcher", "limits"):
        if section in doc:
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in doc[section].items()]
    for model in doc["models"]:
        lines.append("[[models]]")
        lines += [f"{k} = {value(v)}" for k, v in model.items() if k != "defaults"]
    path = tmp_path / "provider.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_checks_files_and_reads_the_key(document: dict[str, Any], tmp_path: Path) -> None:
    path = _write_toml(tmp_path, document)
    config = load_config(path)
    secret = load_secret_key(config)
    assert secret.public_key == key(1).public_key
    secret.wipe()


def test_nsec_key_file_is_read(document: dict[str, Any], tmp_path: Path) -> None:
    key_file = Path(document["node"]["key_file"])
    key_file.write_text(encode_nsec(key(1)) + "\n", encoding="ascii")
    config = load_config(_write_toml(tmp_path, document))
    assert load_secret_key(config).public_key == key(1).public_key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(
    document: dict[str, Any], tmp_path: Path, mode: int
) -> None:
    Path(document["node"]["key_file"]).chmod(mode)
    with pytest.raises(
        ConfigError, match=rf"node.key_file: .* has mode {mode:04o}; it must be 0600"
    ):
        load_config(_write_toml(tmp_path, document))


def test_missing_key_file_is_refused(document: dict[str, Any], tmp_path: Path) -> None:
    Path(document["node"]["key_file"]).unlink()
    with pytest.raises(ConfigError, match=r"node.key_file: .* cannot be read"):
        load_config(_write_toml(tmp_path, document))


def test_garbage_key_file_is_refused(document: dict[str, Any], tmp_path: Path) -> None:
    Path(document["node"]["key_file"]).write_text("hello\n", encoding="ascii")
    config = load_config(_write_toml(tmp_path, document))
    with pytest.raises(ConfigError, match="holds no nsec or hex secret key"):
        load_secret_key(config)


def test_model_sha256_mismatch_refuses_to_start(document: dict[str, Any], tmp_path: Path) -> None:
    Path(document["models"][0]["path"]).write_bytes(b"swapped model")
    with pytest.raises(ConfigError, match=r"models\[0\].sha256: .* hashes to [0-9a-f]{64}"):
        load_config(_write_toml(tmp_path, document))


def test_missing_model_file_is_refused(document: dict[str, Any], tmp_path: Path) -> None:
    Path(document["models"][0]["path"]).unlink()
    with pytest.raises(ConfigError, match=r"models\[0\].path: .* is not a file"):
        load_config(_write_toml(tmp_path, document))


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "absent.toml")


def test_example_config_parses() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    config = parse_config(data, base_dir=EXAMPLE.parent)
    assert config.launcher.kind is LauncherKind.LOCAL
    assert config.models


_STATIC_DOCUMENT: dict[str, Any] = {
    "node": {"key_file": "k", "data_dir": "d", "relays": ["ws://127.0.0.1:1"]},
    "tee": {"kinds": ["simulated"]},
    "models": [{"name": "m", "runner": "onnx", "path": "m.onnx", "sha256": "0" * 64}],
}
_toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    section=st.sampled_from(["node", "tee", "launcher", "limits", "models"]),
    garbage=_toml_values,
)
def test_garbage_raises_only_config_error(section: str, garbage: object) -> None:
    doc = copy.deepcopy(_STATIC_DOCUMENT)  # parse_config never touches the files it names
    doc[section] = garbage
    with contextlib.suppress(ConfigError):
        parse_config(doc, base_dir=Path("/"))
