"""The provider config (``cdvm serve --config provider.toml``): TOML into frozen values.

TOML 1.0: https://toml.io/en/v1.0.0 (read with :mod:`tomllib`). Every key is documented in
``docs/node.md``; ``examples/provider.toml`` is a complete example.

Contract: :func:`parse_config` checks structure and values and raises :class:`ConfigError`
whose message names the key (``limits.max_concurrent_jobs``, ``models[1].sha256``); unknown
keys are refused, because a setting nobody reads is a setting the operator believes in.
Relative paths are resolved against the config file's directory. The TEE kinds must be ones
the chosen launcher can run (``simulated`` only locally, ``sev-snp``/``sev-snp+nvidia-h100``
only on Kubernetes, the GPU kind only with a GPU runtime class); ``launcher.kind =
"kubernetes"`` needs the ``[launcher.kubernetes]`` table
(:func:`dvm.node.kubernetes.pod.parse_kubernetes_config`) and refuses the local launcher's keys.

:func:`load_config` also checks the files: the node key file exists and is private (no
group/other permission bits, i.e. mode 0600 or 0400), and, for the local launcher, each model
file exists and matches its ``sha256`` (the container checks it again before loading). Under
Kubernetes the models are baked into the job image at ``/models/<name>``
(container/Containerfile): the node announces name, runner and sha256 from the config and
never needs the files. :func:`load_secret_key` reads the nsec. The ``[limits]`` table is
:mod:`dvm.node.limits`, the ``[[models]]`` entries :mod:`dvm.node.models`; the typed key
readers :mod:`dvm.node.config_fields`.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dvm.cdvm.tee import CONFIDENTIAL_CONTAINER_TEES, is_gpu_job
from dvm.nostr.errors import NostrError
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import decode_nsec
from dvm.nostr.nip90 import JOB_REQUEST_KINDS, TeeKind

from .config_fields import boolean, integer, resolve_path, table, text
from .errors import ConfigError
from .kubernetes.pod import KubernetesConfig, parse_kubernetes_config
from .limits import LimitsConfig, parse_limits
from .models import (
    ModelConfig,
    check_model_files,
    parse_model,
    resolve_model_packages,
    sha256_file,
)

__all__ = [
    "LauncherConfig",
    "LauncherKind",
    "LimitsConfig",
    "ModelConfig",
    "NodeConfig",
    "TeeConfig",
    "load_config",
    "load_secret_key",
    "parse_config",
    "sha256_file",
]

_DEFAULT_SIMULATED_DIR = "~/.config/cdvm/simulated-tee"
_DEFAULT_NAME = "confidential-dvm provider"
_DEFAULT_ABOUT = "AI jobs in a fresh confidential container per job"


class LauncherKind(StrEnum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"


#: Which TEE kinds each launcher can offer.
_LAUNCHER_TEES = {
    LauncherKind.LOCAL: frozenset({TeeKind.SIMULATED}),
    LauncherKind.KUBERNETES: CONFIDENTIAL_CONTAINER_TEES,
}


@dataclass(frozen=True, slots=True)
class TeeConfig:
    kinds: tuple[str, ...]
    simulated_dir: Path


@dataclass(frozen=True, slots=True)
class LauncherConfig:
    """``[launcher]``: the local launcher's keys, or ``kubernetes`` (set iff kind is kubernetes)."""

    kind: LauncherKind = LauncherKind.LOCAL
    allow_unsandboxed: bool = False
    bwrap: str = "bwrap"
    runtime_root: Path | None = None
    memory_bytes: int = 8 * 1024**3
    cpu_time_s: int = 3600
    kubernetes: KubernetesConfig | None = None


@dataclass(frozen=True, slots=True)
class NodeConfig:
    key_file: Path
    data_dir: Path
    relays: tuple[str, ...]
    models: tuple[ModelConfig, ...]
    tee: TeeConfig
    launcher: LauncherConfig = LauncherConfig()
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    name: str = _DEFAULT_NAME
    about: str = _DEFAULT_ABOUT
    identifier: str = "cdvm"
    kinds: tuple[int, ...] = (5050,)
    since_lookback_s: int = 60

    def model(self, name: str) -> ModelConfig | None:
        for model in self.models:
            if model.name == name:
                return model
        return None


def _relays(data: Mapping[str, Any]) -> tuple[str, ...]:
    relays = data.get("relays")
    if not isinstance(relays, list) or not relays:
        raise ConfigError("config key node.relays must be a non-empty list of relay URLs")
    for url in relays:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ConfigError("config key node.relays must hold ws:// or wss:// URLs")
    return tuple(dict.fromkeys(relays))


def _kinds(data: Mapping[str, Any]) -> tuple[int, ...]:
    kinds = data.get("kinds", [5050])
    if not isinstance(kinds, list) or not kinds:
        raise ConfigError("config key node.kinds must be a non-empty list of job kinds")
    for kind in kinds:
        if isinstance(kind, bool) or not isinstance(kind, int) or kind not in JOB_REQUEST_KINDS:
            raise ConfigError("config key node.kinds must hold job request kinds 5000-5999")
    return tuple(dict.fromkeys(kinds))


# --- sections ------------------------------------------------------------------------------

_TOP = frozenset({"node", "tee", "launcher", "limits", "models"})
_NODE = frozenset(
    {"key_file", "data_dir", "relays", "name", "about", "identifier", "kinds", "since_lookback_s"}
)
_TEE = frozenset({"kinds", "simulated_dir"})
_LOCAL_ONLY = frozenset(
    {"allow_unsandboxed", "bwrap", "runtime_root", "memory_bytes", "cpu_time_s"}
)
_LAUNCHER = _LOCAL_ONLY | {"kind", "kubernetes"}


def _launcher(data: Mapping[str, Any], base_dir: Path) -> LauncherConfig:
    raw = table(data, "launcher", "launcher", _LAUNCHER)
    d = LauncherConfig()
    kind_text = text(raw, "kind", "launcher", d.kind.value)
    try:
        kind = LauncherKind(kind_text)
    except ValueError:
        raise ConfigError("config key launcher.kind must be 'local' or 'kubernetes'") from None
    if kind is LauncherKind.KUBERNETES:
        return _kubernetes_launcher(raw, base_dir)
    if "kubernetes" in raw:
        raise ConfigError(
            "config table launcher.kubernetes is set but launcher.kind is 'local': "
            "set launcher.kind = 'kubernetes' or remove the table"
        )
    root = raw.get("runtime_root")
    if root is not None and (not isinstance(root, str) or not root):
        raise ConfigError("config key launcher.runtime_root must be a non-empty string")
    return LauncherConfig(
        kind=kind,
        allow_unsandboxed=boolean(raw, "allow_unsandboxed", "launcher", default=False),
        bwrap=text(raw, "bwrap", "launcher", d.bwrap),
        runtime_root=resolve_path(base_dir, root) if root is not None else None,
        memory_bytes=integer(raw, "memory_bytes", "launcher", d.memory_bytes, low=64 * 1024**2),
        cpu_time_s=integer(raw, "cpu_time_s", "launcher", d.cpu_time_s),
    )


def _kubernetes_launcher(raw: Mapping[str, Any], base_dir: Path) -> LauncherConfig:
    local = sorted(set(raw) & _LOCAL_ONLY)
    if local:
        raise ConfigError(
            f"config key(s) launcher.{', launcher.'.join(local)} apply to the local launcher "
            "only; launcher.kind is 'kubernetes' (its settings are in [launcher.kubernetes])"
        )
    table = raw.get("kubernetes")
    if table is None:
        raise ConfigError(
            "config table launcher.kubernetes is required when launcher.kind = 'kubernetes' "
            "(at least image = 'registry/path@sha256:...'; docs/deploy.md)"
        )
    if not isinstance(table, dict):
        raise ConfigError("config key launcher.kubernetes must be a table")
    kube = parse_kubernetes_config(table)
    if kube.kubeconfig is not None:  # a path like every other: relative to the config file
        kube = dataclasses.replace(kube, kubeconfig=str(resolve_path(base_dir, kube.kubeconfig)))
    return LauncherConfig(kind=LauncherKind.KUBERNETES, kubernetes=kube)


_TEE_NAMES = frozenset(t.value for t in TeeKind)
_WHY_NOT = {
    LauncherKind.LOCAL: "hardware TEEs need the kubernetes launcher",
    LauncherKind.KUBERNETES: (
        "simulated evidence is not confidential and runs only under the local launcher"
    ),
}


def _tee(data: Mapping[str, Any], base_dir: Path, launcher: LauncherConfig) -> TeeConfig:
    raw = table(data, "tee", "tee", _TEE)
    kinds = raw.get("kinds")
    if not isinstance(kinds, list) or not kinds:
        raise ConfigError("config key tee.kinds must be a non-empty list of TEE kinds")
    offered = _LAUNCHER_TEES[launcher.kind]
    for kind in kinds:
        if not isinstance(kind, str):
            raise ConfigError("config key tee.kinds must hold TEE kind names (strings)")
        if kind not in offered:
            why = f" ({_WHY_NOT[launcher.kind]})" if kind in _TEE_NAMES else ""
            raise ConfigError(
                f"config key tee.kinds: the {launcher.kind.value} launcher offers only "
                f"{', '.join(sorted(offered))}, not {kind[:32]!r}{why}"
            )
    kube = launcher.kubernetes
    gpu_kinds = sorted(kind for kind in kinds if is_gpu_job(kind))
    if gpu_kinds and kube is not None and not kube.offers_gpu:
        raise ConfigError(
            f"config key tee.kinds offers {', '.join(gpu_kinds)} but "
            "launcher.kubernetes.gpu_runtime_class is not set (for example "
            "kata-qemu-nvidia-gpu-snp); GPU jobs could never start"
        )
    simulated_dir = text(raw, "simulated_dir", "tee", _DEFAULT_SIMULATED_DIR)
    return TeeConfig(tuple(dict.fromkeys(kinds)), resolve_path(base_dir, simulated_dir))


def parse_config(data: Mapping[str, Any], *, base_dir: Path) -> NodeConfig:
    """Check a parsed TOML document and build the config, or raise :class:`ConfigError`."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ConfigError(f"config has unknown top-level key(s): {', '.join(unknown)}")
    node = table(data, "node", "node", _NODE)
    launcher = _launcher(data, base_dir)
    limits = parse_limits(data)
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError("config key models must list at least one [[models]] table")
    in_image = launcher.kind is LauncherKind.KUBERNETES
    models = tuple(
        parse_model(raw, i, base_dir, limits.max_output_tokens, in_image=in_image)
        for i, raw in enumerate(raw_models)
    )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError("config key models: two models have the same name")
    identifier = node.get("identifier", "cdvm")
    if not isinstance(identifier, str):
        raise ConfigError("config key node.identifier must be a string")
    return NodeConfig(
        key_file=resolve_path(base_dir, text(node, "key_file", "node")),
        data_dir=resolve_path(base_dir, text(node, "data_dir", "node")),
        relays=_relays(node),
        models=models,
        tee=_tee(data, base_dir, launcher),
        launcher=launcher,
        limits=limits,
        name=text(node, "name", "node", _DEFAULT_NAME),
        about=text(node, "about", "node", _DEFAULT_ABOUT),
        identifier=identifier,
        kinds=_kinds(node),
        since_lookback_s=integer(node, "since_lookback_s", "node", 60, low=0),
    )


# --- files ---------------------------------------------------------------------------------


def _check_key_file(path: Path) -> None:
    try:
        info = path.stat()
    except OSError:
        raise ConfigError(f"config key node.key_file: {path} cannot be read") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"config key node.key_file: {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"config key node.key_file: {path} has mode {mode:04o}; it must be 0600 "
            f"(run: chmod 600 {path})"
        )


def load_config(path: Path) -> NodeConfig:
    """Read, parse and check ``path``: the key file's mode and (local) every model's sha256."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError(f"config file {path} cannot be read") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    config = parse_config(data, base_dir=path.resolve().parent)
    _check_key_file(config.key_file)
    if config.launcher.kind is LauncherKind.LOCAL:  # under Kubernetes: in the job image
        models = resolve_model_packages(config.models, config.data_dir)
        config = dataclasses.replace(config, models=models)
        check_model_files(config.models)
    return config


def load_secret_key(config: NodeConfig) -> SecretKey:
    """The node key P from ``node.key_file`` (an nsec, or 64 hex), checked private first."""
    _check_key_file(config.key_file)
    # O_NOFOLLOW: a symlink swapped in after the check must not redirect the read.
    fd = os.open(config.key_file, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as handle:
        text = handle.read().strip()
    try:
        if text.startswith("nsec1"):
            return decode_nsec(text)
        return SecretKey.from_hex(text)
    except NostrError:
        raise ConfigError(
            f"config key node.key_file: {config.key_file} holds no nsec or hex secret key"
        ) from None
