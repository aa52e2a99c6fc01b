"""Model runners: the seam, the generation parameters and the sha256 check.

Spec: DESIGN §3.7 (run), §5 (models are checked against their sha256 before loading);
docs/container.md (the parameters).

Contract:

* :class:`Runner` is the seam: ``run(text, emit=..., cancel=...)`` runs one input in a worker
  thread, calls ``emit`` with each piece of streamed output as it is produced (runners that
  cannot stream emit nothing) and returns the whole final answer, or raises
  :class:`~container.errors.RunError` (``bad-input`` / ``model-failed``) for that input only.
  ``cancel`` is a :class:`threading.Event` the runner checks between pieces.
* :func:`check_model_file` hashes the file (``hashlib.file_digest``, streamed) and compares it
  with the spec's sha256 **before** anything parses it; :func:`load_runner` does both, blocking
  (the shell calls it in a worker thread, concurrently with getting evidence), and passes the
  runner the load options of the model's defaults (:func:`dvm.cdvm.params.load_options`).
* :class:`GenerationParams` merges ``["param", name, value]`` of the request over the model's
  defaults with the node's own rules (:mod:`dvm.cdvm.params`: the one table both apply), so
  the container accepts exactly what the node admitted; ``max_tokens`` defaults to
  ``limits.max_output_tokens`` and above it is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dvm.cdvm.params import ParamError, Value, load_options, parse_default, parse_param

from .errors import ModelError, SpecError
from .launch import ModelSpec, RunnerKind

__all__ = [
    "GenerationParams",
    "Runner",
    "check_model_file",
    "load_runner",
]

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40


class Runner(Protocol):
    """Runs one input; see the module docstring."""

    def run(self, text: str, *, emit: Callable[[str], None], cancel: threading.Event) -> str: ...

    def close(self) -> None: ...


def check_model_file(path: Path, sha256: str) -> None:
    """Raise :class:`ModelError` unless the file exists and its SHA-256 is ``sha256``."""
    try:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256")
    except OSError as exc:
        raise ModelError(f"model file {path.name}: {exc.strerror or type(exc).__name__}") from None
    if not hmac.compare_digest(digest.hexdigest(), sha256):
        raise ModelError(f"model file {path.name}: sha256 {digest.hexdigest()} != {sha256}")


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
        """Request params over model defaults; SpecError names the bad parameter.

        Every default and every request param is checked (:mod:`dvm.cdvm.params`), including
        the ones this class does not hold (``model``, ``mode``, the load options).
        """
        values: dict[str, Value] = {}
        for name, value in defaults.items():
            try:
                values[name] = parse_default(name, value, max_output_tokens=max_output_tokens)
            except ParamError as exc:
                raise SpecError(f"model.defaults: {exc}") from None
        for name, text in request_params:
            try:
                values[name] = parse_param(name, text, max_output_tokens=max_output_tokens)
            except ParamError as exc:
                raise SpecError(f"the request: {exc}") from None
        seed = values.get("seed")
        return cls(
            max_tokens=int(values.get("max_tokens", max_output_tokens)),
            temperature=float(values.get("temperature", DEFAULT_TEMPERATURE)),
            top_p=float(values.get("top_p", DEFAULT_TOP_P)),
            top_k=int(values.get("top_k", DEFAULT_TOP_K)),
            seed=None if seed is None else int(seed),
        )


def load_runner(model: ModelSpec, *, params: GenerationParams) -> Runner:
    """Check the model's sha256, then load it with its runner (blocking; raises ModelError)."""
    path = Path(model.path)
    check_model_file(path, model.sha256)
    if model.runner is RunnerKind.LLAMA:
        from .llama_runner import DEFAULT_N_CTX, LlamaRunner  # noqa: PLC0415 - llama-cpp when used

        try:
            options = load_options(model.defaults, runner=model.runner)
        except ParamError as exc:
            raise ModelError(f"model.defaults: {exc}") from None
        n_threads = options.get("n_threads")
        return LlamaRunner.load(
            path,
            params=params,
            n_ctx=int(options.get("n_ctx", DEFAULT_N_CTX)),
            n_threads=None if n_threads is None else int(n_threads),
        )
    from .onnx_runner import OnnxRunner  # noqa: PLC0415 - onnxruntime only when used

    return OnnxRunner.load(path)
