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
never needs the files. :func:`load_secret_key` reads the nsec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from container.launch import Limits, ModelSpec, RunnerKind
from dvm.cdvm.params import ParamError, check_default
from dvm.nostr.errors import NostrError
from dvm.nostr.hex64 import is_hex64
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip19 import decode_npub, decode_nsec
from dvm.nostr.nip90 import JOB_REQUEST_KINDS, TeeKind

from .errors import ConfigError
from .kubernetes.pod import MODELS_DIR, KubernetesConfig, parse_kubernetes_config

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

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DEFAULT_SIMULATED_DIR = "~/.config/cdvm/simulated-tee"
_DEFAULT_NAME = "confidential-dvm provider"
_DEFAULT_ABOUT = "AI jobs in a fresh confidential container per job"


class LauncherKind(StrEnum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"


#: Which TEE kinds each launcher can offer.
_LAUNCHER_TEES = {
    LauncherKind.LOCAL: frozenset({TeeKind.SIMULATED}),
    LauncherKind.KUBERNETES: frozenset({TeeKind.SEV_SNP, TeeKind.SEV_SNP_NVIDIA_H100}),
}


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One served model. ``path`` is the file on the node (local launcher) or, under
    Kubernetes, where the job image holds it (``/models/<name>``; not on the node's disk)."""

    name: str
    runner: RunnerKind
    path: Path
    sha256: str
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def spec(self) -> ModelSpec:
        """The launch contract's model (docs/launch.md §1), ``path`` still the node's."""
        return ModelSpec(
            name=self.name,
            runner=self.runner,
            path=str(self.path),
            sha256=self.sha256,
            defaults=dict(self.defaults),
        )


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


_JOB_LIMITS = Limits()  # a job's default limits are the launch contract's


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: the node's own (admission, grace) and each job's (:meth:`job_limits`)."""

    max_concurrent_jobs: int = 2
    rate_limit_burst: int = 5
    rate_limit_per_minute: float = 6.0
    min_pow_bits: int = 0
    allowed_requesters: frozenset[str] | None = None
    max_request_bytes: int = 16 * 1024
    attestation_timeout_s: float = _JOB_LIMITS.attestation_timeout_s
    idle_timeout_s: float = _JOB_LIMITS.idle_timeout_s
    deadline_s: float = _JOB_LIMITS.deadline_s
    grace_s: float = 10.0
    max_input_bytes: int = _JOB_LIMITS.max_input_bytes
    max_output_tokens: int = _JOB_LIMITS.max_output_tokens

    def job_limits(self) -> Limits:
        """The limits every job container gets (docs/launch.md §1)."""
        return Limits(
            attestation_timeout_s=self.attestation_timeout_s,
            idle_timeout_s=self.idle_timeout_s,
            deadline_s=self.deadline_s,
            max_input_bytes=self.max_input_bytes,
            max_output_tokens=self.max_output_tokens,
        )


@dataclass(frozen=True, slots=True)
class NodeConfig:
    key_file: Path
    data_dir: Path
    relays: tuple[str, ...]
    models: tuple[ModelConfig, ...]
    tee: TeeConfig
    launcher: LauncherConfig = LauncherConfig()
    limits: LimitsConfig = LimitsConfig()
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


# --- field readers: each names its key in the error --------------------------------------


def _table(
    data: Mapping[str, Any], key: str, where: str, allowed: frozenset[str]
) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config key {where} must be a table")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"config table {where} has unknown key(s): {', '.join(unknown)}")
    return value


def _str(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    if key not in data:
        if default is None:
            raise ConfigError(f"config key {where}.{key} is required")
        return default
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key {where}.{key} must be a non-empty string")
    return value


def _int(data: Mapping[str, Any], key: str, where: str, default: int, *, low: int = 1) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"config key {where}.{key} must be an integer >= {low}")
    return value


def _num(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"config key {where}.{key} must be a positive number")
    return float(value)


def _bool(data: Mapping[str, Any], key: str, where: str, *, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"config key {where}.{key} must be true or false")
    return value


def _path(base_dir: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path


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


def _requesters(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    where = "limits.allowed_requesters"
    if not isinstance(value, list):
        raise ConfigError(f"config key {where} must be a list of npub or hex public keys")
    keys: set[str] = set()
    for index, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ConfigError(f"config key {where}[{index}] must be a string")
            key = decode_npub(item) if item.startswith("npub1") else PublicKey.from_hex(item)
        except NostrError:
            raise ConfigError(f"config key {where}[{index}] is not a public key") from None
        keys.add(key.hex())
    return frozenset(keys)


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
_LIMITS = frozenset(
    {
        "max_concurrent_jobs",
        "rate_limit_burst",
        "rate_limit_per_minute",
        "min_pow_bits",
        "allowed_requesters",
        "max_request_bytes",
        "attestation_timeout_s",
        "idle_timeout_s",
        "deadline_s",
        "grace_s",
        "max_input_bytes",
        "max_output_tokens",
    }
)
_MODEL = frozenset({"name", "runner", "path", "sha256", "defaults"})


def _limits(data: Mapping[str, Any]) -> LimitsConfig:
    raw = _table(data, "limits", "limits", _LIMITS)
    d = LimitsConfig()
    w = "limits"
    limits = LimitsConfig(
        max_concurrent_jobs=_int(raw, "max_concurrent_jobs", w, d.max_concurrent_jobs),
        rate_limit_burst=_int(raw, "rate_limit_burst", w, d.rate_limit_burst),
        rate_limit_per_minute=_num(raw, "rate_limit_per_minute", w, d.rate_limit_per_minute),
        min_pow_bits=_int(raw, "min_pow_bits", w, d.min_pow_bits, low=0),
        allowed_requesters=_requesters(raw.get("allowed_requesters")),
        max_request_bytes=_int(raw, "max_request_bytes", w, d.max_request_bytes),
        attestation_timeout_s=_num(raw, "attestation_timeout_s", w, d.attestation_timeout_s),
        idle_timeout_s=_num(raw, "idle_timeout_s", w, d.idle_timeout_s),
        deadline_s=_num(raw, "deadline_s", w, d.deadline_s),
        grace_s=_num(raw, "grace_s", w, d.grace_s),
        max_input_bytes=_int(raw, "max_input_bytes", w, d.max_input_bytes),
        max_output_tokens=_int(raw, "max_output_tokens", w, d.max_output_tokens),
    )
    if limits.min_pow_bits > 256:
        raise ConfigError("config key limits.min_pow_bits must be at most 256")
    return limits


def _launcher(data: Mapping[str, Any], base_dir: Path) -> LauncherConfig:
    raw = _table(data, "launcher", "launcher", _LAUNCHER)
    d = LauncherConfig()
    kind_text = _str(raw, "kind", "launcher", d.kind.value)
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
        allow_unsandboxed=_bool(raw, "allow_unsandboxed", "launcher", default=False),
        bwrap=_str(raw, "bwrap", "launcher", d.bwrap),
        runtime_root=_path(base_dir, root) if root is not None else None,
        memory_bytes=_int(raw, "memory_bytes", "launcher", d.memory_bytes, low=64 * 1024**2),
        cpu_time_s=_int(raw, "cpu_time_s", "launcher", d.cpu_time_s),
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
        kube = dataclasses.replace(kube, kubeconfig=str(_path(base_dir, kube.kubeconfig)))
    return LauncherConfig(kind=LauncherKind.KUBERNETES, kubernetes=kube)


_TEE_NAMES = frozenset(t.value for t in TeeKind)
_WHY_NOT = {
    LauncherKind.LOCAL: "hardware TEEs need the kubernetes launcher",
    LauncherKind.KUBERNETES: (
        "simulated evidence is not confidential and runs only under the local launcher"
    ),
}


def _tee(data: Mapping[str, Any], base_dir: Path, launcher: LauncherConfig) -> TeeConfig:
    raw = _table(data, "tee", "tee", _TEE)
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
    if TeeKind.SEV_SNP_NVIDIA_H100 in kinds and kube is not None and not kube.offers_gpu:
        raise ConfigError(
            f"config key tee.kinds offers {TeeKind.SEV_SNP_NVIDIA_H100.value} but "
            "launcher.kubernetes.gpu_runtime_class is not set (for example "
            "kata-qemu-nvidia-gpu-snp); GPU jobs could never start"
        )
    simulated_dir = _str(raw, "simulated_dir", "tee", _DEFAULT_SIMULATED_DIR)
    return TeeConfig(tuple(dict.fromkeys(kinds)), _path(base_dir, simulated_dir))


def _model_path(
    raw: Mapping[str, Any], where: str, name: str, base_dir: Path, *, in_image: bool
) -> Path:
    if not in_image:
        return _path(base_dir, _str(raw, "path", where))
    # Under Kubernetes the job image holds the model (baked in by digest); a path on the node
    # would be a setting nobody reads, so only the in-image path itself is accepted.
    image_path = f"{MODELS_DIR}/{name}"
    if "path" in raw and raw["path"] != image_path:
        raise ConfigError(
            f"config key {where}.path: under the kubernetes launcher the model is baked into "
            f"the job image at {image_path}; remove path (or set it to {image_path!r})"
        )
    return Path(image_path)


def _model(
    raw: object, index: int, base_dir: Path, max_output_tokens: int, *, in_image: bool
) -> ModelConfig:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {where} must be a table")
    unknown = sorted(set(raw) - _MODEL)
    if unknown:
        raise ConfigError(f"config table {where} has unknown key(s): {', '.join(unknown)}")
    name = _str(raw, "name", where)
    if not _MODEL_NAME.fullmatch(name):
        raise ConfigError(f"config key {where}.name must match {_MODEL_NAME.pattern}")
    try:
        runner = RunnerKind(_str(raw, "runner", where))
    except ValueError:
        raise ConfigError(f"config key {where}.runner must be 'llama' or 'onnx'") from None
    sha256 = _str(raw, "sha256", where)
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
    )


def parse_config(data: Mapping[str, Any], *, base_dir: Path) -> NodeConfig:
    """Check a parsed TOML document and build the config, or raise :class:`ConfigError`."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ConfigError(f"config has unknown top-level key(s): {', '.join(unknown)}")
    node = _table(data, "node", "node", _NODE)
    launcher = _launcher(data, base_dir)
    limits = _limits(data)
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError("config key models must list at least one [[models]] table")
    in_image = launcher.kind is LauncherKind.KUBERNETES
    models = tuple(
        _model(raw, i, base_dir, limits.max_output_tokens, in_image=in_image)
        for i, raw in enumerate(raw_models)
    )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError("config key models: two models have the same name")
    identifier = node.get("identifier", "cdvm")
    if not isinstance(identifier, str):
        raise ConfigError("config key node.identifier must be a string")
    return NodeConfig(
        key_file=_path(base_dir, _str(node, "key_file", "node")),
        data_dir=_path(base_dir, _str(node, "data_dir", "node")),
        relays=_relays(node),
        models=models,
        tee=_tee(data, base_dir, launcher),
        launcher=launcher,
        limits=limits,
        name=_str(node, "name", "node", _DEFAULT_NAME),
        about=_str(node, "about", "node", _DEFAULT_ABOUT),
        identifier=identifier,
        kinds=_kinds(node),
        since_lookback_s=_int(node, "since_lookback_s", "node", 60, low=0),
    )


# --- files ---------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The file's SHA-256, hex (streamed; raises OSError): the node's check at start, whose
    error names both hashes; the container checks again before loading (``check_model_file``)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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


def _check_models(config: NodeConfig) -> None:
    if config.launcher.kind is LauncherKind.KUBERNETES:
        return  # the files are in the job image; the container checks each sha256 there
    for index, model in enumerate(config.models):
        if not model.path.is_file():
            raise ConfigError(f"config key models[{index}].path: {model.path} is not a file")
        actual = sha256_file(model.path)
        if actual != model.sha256:
            raise ConfigError(
                f"config key models[{index}].sha256: {model.path} hashes to {actual}, "
                f"not the configured {model.sha256}; refusing to serve it"
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
    _check_models(config)
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
