"""The provider's ``[[models]]`` entries: what each served model is, and its file's check.

Part of ``provider.toml`` (docs/node.md §2; parsed by :func:`dvm.node.config.parse_config`).
A model has a ``name`` (announced, and named by requests), a ``runner`` (``llama`` or
``onnx``), a ``sha256`` and optional ``defaults`` checked against the one table of job
parameters (:mod:`dvm.cdvm.params`, so the container accepts them too). Under the local launcher
the file is either ``path`` (on the node, resolved against the config's directory) or
``package``, a supported model package (:mod:`dvm.node.model_packages`) resolved to its file at
start by :func:`resolve_model_packages`; ``path`` and ``package`` are mutually exclusive, and
either way the file is checked against ``sha256`` at start (:func:`check_model_files`). Under
Kubernetes the model is baked into the job image at ``/models/<name>`` and the node never reads
it (the container checks it there), so ``package`` is refused there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from container.launch import ModelSpec, RunnerKind
from dvm.cdvm.params import ParamError, check_default
from dvm.nostr.hex64 import is_hex64

from .config_fields import resolve_path, text
from .errors import ConfigError
from .kubernetes.pod import MODELS_DIR
from .model_packages import MODEL_PACKAGES, resolve_model_package

__all__ = [
    "MODEL_KEYS",
    "ModelConfig",
    "check_model_files",
    "parse_model",
    "resolve_model_packages",
    "sha256_file",
]

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The keys a ``[[models]]`` table may hold.
MODEL_KEYS = frozenset({"name", "runner", "path", "package", "sha256", "defaults"})


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One served model. ``path`` is the file on the node (local launcher) or, under
    Kubernetes, where the job image holds it (``/models/<name>``; not on the node's disk).
    For a ``package`` entry ``path`` is a placeholder naming the package (never a file) until
    :func:`resolve_model_packages` replaces it, at start."""

    name: str
    runner: RunnerKind
    path: Path
    sha256: str
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    package: str | None = None

    def spec(self) -> ModelSpec:
        """The launch contract's model (docs/launch.md §1), ``path`` still the node's."""
        return ModelSpec(
            name=self.name,
            runner=self.runner,
            path=str(self.path),
            sha256=self.sha256,
            defaults=dict(self.defaults),
        )


def _model_path(
    raw: Mapping[str, Any], where: str, name: str, base_dir: Path, *, in_image: bool
) -> Path:
    if "package" in raw:
        return _package_placeholder(raw, where, in_image=in_image)
    if not in_image:
        return resolve_path(base_dir, text(raw, "path", where))
    # Under Kubernetes the job image holds the model (baked in by digest); a path on the node
    # would be a setting nobody reads, so only the in-image path itself is accepted.
    image_path = f"{MODELS_DIR}/{name}"
    if "path" in raw and raw["path"] != image_path:
        raise ConfigError(
            f"config key {where}.path: under the kubernetes launcher the model is baked into "
            f"the job image at {image_path}; remove path (or set it to {image_path!r})"
        )
    return Path(image_path)


def _package_placeholder(raw: Mapping[str, Any], where: str, *, in_image: bool) -> Path:
    package = text(raw, "package", where)
    if in_image:
        raise ConfigError(
            f"config key {where}.package: under the kubernetes launcher the model is baked into "
            "the job image; remove package"
        )
    if "path" in raw:
        raise ConfigError(f"config table {where}: path and package are mutually exclusive")
    if package not in MODEL_PACKAGES:
        raise ConfigError(
            f"config key {where}.package must be one of {', '.join(sorted(MODEL_PACKAGES))}"
        )
    return Path(f"<package {package}>")


def parse_model(
    raw: object, index: int, base_dir: Path, max_output_tokens: int, *, in_image: bool
) -> ModelConfig:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {where} must be a table")
    unknown = sorted(set(raw) - MODEL_KEYS)
    if unknown:
        raise ConfigError(f"config table {where} has unknown key(s): {', '.join(unknown)}")
    name = text(raw, "name", where)
    if not _MODEL_NAME.fullmatch(name):
        raise ConfigError(f"config key {where}.name must match {_MODEL_NAME.pattern}")
    try:
        runner = RunnerKind(text(raw, "runner", where))
    except ValueError:
        raise ConfigError(f"config key {where}.runner must be 'llama' or 'onnx'") from None
    sha256 = text(raw, "sha256", where)
    if not is_hex64(sha256):
        raise ConfigError(f"config key {where}.sha256 must be 64 lowercase hex characters")
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"config key {where}.defaults must be a table")
    for key, value in defaults.items():
        try:
            check_default(key, value, max_output_tokens=max_output_tokens)
        except ParamError as exc:
            raise ConfigError(f"config key {where}.defaults.{key}: {exc}") from None
    return ModelConfig(
        name=name,
        runner=runner,
        path=_model_path(raw, where, name, base_dir, in_image=in_image),
        sha256=sha256,
        defaults=MappingProxyType(dict(defaults)),
        package=raw.get("package"),
    )


def resolve_model_packages(
    models: Sequence[ModelConfig], data_dir: Path
) -> tuple[ModelConfig, ...]:
    """``models`` with each ``package`` entry's ``path`` set to the package's file (Gemma
    assembled once under ``data_dir``); raises :class:`ConfigError` with the ``pip install``
    command for a package that is not installed. The sha256 is checked afterwards, by
    :func:`check_model_files`."""
    return tuple(
        model
        if model.package is None
        else replace(model, path=resolve_model_package(model.package, f"models[{i}]", data_dir))
        for i, model in enumerate(models)
    )


def sha256_file(path: Path) -> str:
    """The file's SHA-256, hex (streamed; raises OSError): the node's check at start, whose
    error names both hashes; the container checks again before loading (``check_model_file``)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_model_files(models: Sequence[ModelConfig]) -> None:
    """Each model file exists and hashes to its ``sha256`` (the local launcher's models)."""
    for index, model in enumerate(models):
        key = "path" if model.package is None else "package"
        if not model.path.is_file():
            raise ConfigError(f"config key models[{index}].{key}: {model.path} is not a file")
        actual = sha256_file(model.path)
        if actual != model.sha256:
            raise ConfigError(
                f"config key models[{index}].sha256: {model.path} hashes to {actual}, "
                f"not the configured {model.sha256}; refusing to serve it"
            )
