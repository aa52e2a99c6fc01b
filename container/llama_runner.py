"""The GGUF runner: llama-cpp-python completion, streamed (DESIGN §3.7, §5).

API: ``llama_cpp.Llama(model_path=..., n_ctx=..., n_threads=..., verbose=False)`` and
``Llama.create_completion(prompt, max_tokens=, temperature=, top_p=, top_k=, seed=,
stream=True)``, which yields ``{"choices": [{"text": ...}]}`` chunks
(https://llama-cpp-python.readthedocs.io/en/latest/api-reference/). Completion, not chat: the
demo model (Gemma 3 270M) is a base model.

Contract: :meth:`LlamaRunner.run` is called from a worker thread (the event loop stays free);
it emits each piece of text as llama.cpp produces it and checks ``cancel`` between pieces. The
model is loaded once with ``verbose=False`` so llama.cpp prints nothing about the prompt, and
with the load options of the provider's model defaults (``n_ctx``, ``n_threads``: the rows of
:data:`dvm.cdvm.params.PARAMS` only the provider sets).
``llama_cpp`` is imported only here and only when a GGUF model is loaded.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dvm.cdvm.channel import ChannelError

from .errors import ModelError, RunError
from .runner import GenerationParams

__all__ = ["DEFAULT_N_CTX", "LlamaRunner"]

DEFAULT_N_CTX = 2048


class LlamaRunner:
    """One loaded GGUF model and the job's sampling parameters."""

    def __init__(self, llm: Any, *, params: GenerationParams) -> None:
        self._llm = llm
        self._params = params
        self._lock = threading.Lock()  # llama.cpp contexts are not re-entrant

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        params: GenerationParams,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
    ) -> LlamaRunner:
        try:
            llama_cpp = importlib.import_module("llama_cpp")
        except ImportError:
            raise ModelError("llama-cpp-python is not installed: no GGUF runner") from None
        try:
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {path.name}: {type(exc).__name__}"
            ) from None
        return cls(llm, params=params)

    @property
    def params(self) -> GenerationParams:
        return self._params

    def run(self, text: str, *, emit: Callable[[str], None], cancel: threading.Event) -> str:
        p = self._params
        pieces: list[str] = []
        with self._lock:
            try:
                stream = self._llm.create_completion(
                    text,
                    max_tokens=p.max_tokens,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    top_k=p.top_k,
                    seed=p.seed,
                    stream=True,
                )
                for chunk in stream:
                    if cancel.is_set():
                        break
                    piece = str(chunk["choices"][0]["text"])
                    if piece:
                        pieces.append(piece)
                        emit(piece)
            except ValueError as exc:
                # llama.cpp says ValueError for a prompt longer than the context window.
                raise RunError(
                    ChannelError.BAD_INPUT, f"the input does not fit the model: {len(text)} chars"
                ) from exc
            except (RuntimeError, KeyError, IndexError, TypeError) as exc:
                raise RunError(
                    ChannelError.MODEL_FAILED, f"llama.cpp failed: {type(exc).__name__}"
                ) from exc
        return "".join(pieces)

    def close(self) -> None:
        closer = getattr(self._llm, "close", None)
        if callable(closer):
            closer()
