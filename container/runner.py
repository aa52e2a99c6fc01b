"""Model runners: the seam, the generation parameters, the sha256 check and output batching.

Spec: DESIGN §3.7 (run), §5 (models are checked against their sha256 before loading);
docs/container.md (the batch policy, the parameters).

Contract:

* :class:`Runner` is the seam: ``run(text, emit=..., cancel=...)`` runs one input in a worker
  thread, calls ``emit`` with each piece of streamed output as it is produced (runners that
  cannot stream emit nothing) and returns the whole final answer, or raises
  :class:`~container.errors.RunError` (``bad-input`` / ``model-failed``) for that input only.
  ``cancel`` is a :class:`threading.Event` the runner checks between pieces.
* :func:`check_model_file` hashes the file (streamed, 1 MiB blocks) and compares it with the
  spec's sha256 **before** anything parses it; :func:`load_runner` does both, blocking (the
  shell calls it in a worker thread, concurrently with getting evidence).
* :class:`GenerationParams` merges ``["param", name, value]`` of the request over the model's
  defaults; ``max_tokens`` is capped by ``limits.max_output_tokens``.
* :class:`Batcher` is the pure streaming policy: a batch is sent when it holds
  :data:`BATCH_MAX_PIECES` pieces or its first piece is :data:`BATCH_MAX_DELAY_S` old,
  whichever comes first, and the rest goes out with the final message.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import ModelError, SpecError
from .launch import ModelSpec, RunnerKind

__all__ = [
    "BATCH_MAX_DELAY_S",
    "BATCH_MAX_PIECES",
    "Batcher",
    "GenerationParams",
    "Runner",
    "check_model_file",
    "load_runner",
]

BATCH_MAX_PIECES = 16
BATCH_MAX_DELAY_S = 0.5
_HASH_BLOCK_BYTES = 1024 * 1024
_LOAD_OPTIONS = frozenset({"n_ctx", "n_threads"})
_GENERATION = frozenset({"max_tokens", "temperature", "top_p", "top_k", "seed"})
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40


class Runner(Protocol):
    """Runs one input; see the module docstring."""

    def run(self, text: str, *, emit: Callable[[str], None], cancel: threading.Event) -> str: ...

    def close(self) -> None: ...


def check_model_file(path: Path, sha256: str) -> None:
    """Raise :class:`ModelError` unless the file exists and its SHA-256 is ``sha256``."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(_HASH_BLOCK_BYTES):
                digest.update(block)
    except OSError as exc:
        raise ModelError(f"model file {path.name}: {exc.strerror or type(exc).__name__}") from None
    if not hmac.compare_digest(digest.hexdigest(), sha256):
        raise ModelError(f"model file {path.name}: sha256 {digest.hexdigest()} != {sha256}")


def _number(value: object, name: str) -> float:
    if isinstance(value, bool):
        raise SpecError(f"parameter {name} must be a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise SpecError(f"parameter {name} must be a number") from None
    else:
        raise SpecError(f"parameter {name} must be a number")
    if not math.isfinite(number):
        raise SpecError(f"parameter {name} must be finite")
    return number


def _integer(value: object, name: str) -> int:
    number = _number(value, name)
    if number != int(number):
        raise SpecError(f"parameter {name} must be an integer")
    return int(number)


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling parameters of the GGUF runner (llama.cpp's ``create_completion`` names)."""

    max_tokens: int
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    seed: int | None = None

    @classmethod
    def from_sources(
        cls,
        defaults: Mapping[str, Any],
        request_params: tuple[tuple[str, str], ...],
        *,
        max_output_tokens: int,
    ) -> GenerationParams:
        """Request params over model defaults; SpecError names the bad parameter."""
        unknown = set(defaults) - _GENERATION - _LOAD_OPTIONS
        if unknown:
            raise SpecError(f"model.defaults has unknown keys: {sorted(unknown)}")
        merged: dict[str, object] = {k: v for k, v in defaults.items() if k in _GENERATION}
        merged |= {k: v for k, v in request_params if k in _GENERATION}
        max_tokens = _integer(merged.get("max_tokens", max_output_tokens), "max_tokens")
        temperature = _number(merged.get("temperature", DEFAULT_TEMPERATURE), "temperature")
        top_p = _number(merged.get("top_p", DEFAULT_TOP_P), "top_p")
        top_k = _integer(merged.get("top_k", DEFAULT_TOP_K), "top_k")
        seed = merged.get("seed")
        if max_tokens < 1:
            raise SpecError("parameter max_tokens must be at least 1")
        if temperature < 0:
            raise SpecError("parameter temperature must be >= 0")
        if not 0 < top_p <= 1:
            raise SpecError("parameter top_p must be in (0, 1]")
        if top_k < 0:
            raise SpecError("parameter top_k must be >= 0")
        seed_value = None if seed is None else _integer(seed, "seed")
        if seed_value is not None and not 0 <= seed_value < 2**32:
            raise SpecError("parameter seed must be in [0, 2**32)")
        return cls(
            max_tokens=min(max_tokens, max_output_tokens),
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed_value,
        )


class Batcher:
    """Groups streamed pieces into messages (pure: the caller passes ``now``, in seconds)."""

    __slots__ = ("_first_at", "_max_delay_s", "_max_pieces", "_pieces")

    def __init__(
        self, *, max_pieces: int = BATCH_MAX_PIECES, max_delay_s: float = BATCH_MAX_DELAY_S
    ) -> None:
        if max_pieces < 1 or max_delay_s <= 0:
            raise ValueError("a batch needs max_pieces >= 1 and max_delay_s > 0")
        self._max_pieces = max_pieces
        self._max_delay_s = max_delay_s
        self._pieces: list[str] = []
        self._first_at: float | None = None

    def add(self, piece: str, *, now: float) -> bool:
        """Store a piece; True when the batch is due (send :meth:`take`)."""
        if not piece:
            return self.due(now=now)
        if not self._pieces:
            self._first_at = now
        self._pieces.append(piece)
        return self.due(now=now)

    def due(self, *, now: float) -> bool:
        if not self._pieces or self._first_at is None:
            return False
        return len(self._pieces) >= self._max_pieces or now - self._first_at >= self._max_delay_s

    def due_at(self) -> float | None:
        """When the pending batch becomes due by age; None when nothing is pending."""
        return None if self._first_at is None else self._first_at + self._max_delay_s

    def take(self) -> str:
        """The pending text, emptied."""
        text = "".join(self._pieces)
        self._pieces.clear()
        self._first_at = None
        return text


def load_runner(model: ModelSpec, *, params: GenerationParams) -> Runner:
    """Check the model's sha256, then load it with its runner (blocking; raises ModelError)."""
    path = Path(model.path)
    check_model_file(path, model.sha256)
    if model.runner is RunnerKind.LLAMA:
        from .llama_runner import LlamaRunner  # noqa: PLC0415 - llama-cpp only when used

        options = {k: _integer(v, k) for k, v in model.defaults.items() if k in _LOAD_OPTIONS}
        return LlamaRunner.load(path, params=params, **options)
    from .onnx_runner import OnnxRunner  # noqa: PLC0415 - onnxruntime only when used

    return OnnxRunner.load(path)
