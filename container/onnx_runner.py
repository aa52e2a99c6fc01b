"""The ONNX runner: onnxruntime on the CPU, tensors in and out as JSON (DESIGN §3.7).

API: ``onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])``, ``get_inputs()``
(name, shape with ints or symbolic strings/None, type such as ``tensor(float)``),
``run(None, feeds)`` (https://onnxruntime.ai/docs/api/python/api_summary.html); ``.npy`` is
NumPy's format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).

Input (the content of one input message), one entry per model input, either form::

    {"inputs": {"x": {"shape": [1, 3], "dtype": "float32", "data": [1.0, 2.0, 3.0]}}}
    {"inputs": {"x": {"npy": "<base64 of a .npy file>"}}}

``data`` is the row-major flat list (or nested lists of that shape). Validation, each failure a
:class:`~container.errors.RunError` ``bad-input`` whose message names the input and the check
(names, shapes and types are the model's, not the requester's data): the names are exactly the
model's inputs; the dtype is the one the model declares; the rank matches and every fixed
dimension matches (symbolic dimensions accept any size >= 1); ``data`` has exactly
``prod(shape)`` values; ``.npy`` loads without pickles.

Output, one entry per model output, in the same form as the inputs used (``.npy`` if every
input came as ``.npy``, else JSON)::

    {"outputs": {"y": {"shape": [1, 3], "dtype": "float32", "data": [...]}}}

Non-finite values cannot be JSON: such an output must be asked for as ``.npy``.
"""

from __future__ import annotations

import binascii
import importlib
import io
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dvm.cdvm.channel import ChannelError

from .errors import ModelError, RunError

__all__ = ["DTYPES", "OnnxRunner", "TensorSpec", "decode_inputs", "encode_outputs"]

#: ONNX tensor element types we accept, by their onnxruntime names, and their NumPy dtypes.
DTYPES: Mapping[str, str] = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
_MAX_ELEMENTS = 64 * 1024 * 1024
# onnxruntime's pybind11 exceptions derive from Exception directly; these are its failure kinds.
_ORT_ERRORS = (
    "Fail",
    "InvalidArgument",
    "RuntimeException",
    "InvalidGraph",
    "NoSuchFile",
    "NotImplemented",
    "InvalidProtobuf",
    "EPFail",
)


def _bad(message: str) -> RunError:
    return RunError(ChannelError.BAD_INPUT, message)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input: its name, dims (int, or None for a symbolic dimension) and dtype."""

    name: str
    dims: tuple[int | None, ...]
    dtype: str


def _tensor(name: str, value: object, spec: TensorSpec) -> tuple[npt.NDArray[Any], bool]:
    if not isinstance(value, dict):
        raise _bad(f"input {name!r} must be a JSON object")
    if set(value) == {"npy"}:
        raw = value["npy"]
        if not isinstance(raw, str):
            raise _bad(f"input {name!r}: npy must be base64 text")
        try:
            array = np.load(io.BytesIO(binascii.a2b_base64(raw, strict_mode=True)))
        except (binascii.Error, ValueError, OSError, EOFError):
            raise _bad(f"input {name!r}: npy is not a base64 .npy file without pickles") from None
        if not isinstance(array, np.ndarray):
            raise _bad(f"input {name!r}: npy is not a single array")
        if str(array.dtype) != spec.dtype:
            raise _bad(f"input {name!r}: dtype {array.dtype} but the model wants {spec.dtype}")
        return array, True
    if set(value) != {"shape", "dtype", "data"}:
        raise _bad(f"input {name!r} must have exactly shape, dtype, data (or only npy)")
    shape, dtype, data = value["shape"], value["dtype"], value["data"]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _bad(f"input {name!r}: shape must be a list of non-negative integers")
    if dtype != spec.dtype:
        raise _bad(f"input {name!r}: dtype {dtype!r} but the model wants {spec.dtype}")
    count = math.prod(shape)
    if count > _MAX_ELEMENTS:
        raise _bad(f"input {name!r}: {count} elements is more than {_MAX_ELEMENTS}")
    if not isinstance(data, list):
        raise _bad(f"input {name!r}: data must be a list")
    try:
        array = np.asarray(data, dtype=spec.dtype)
    except (ValueError, TypeError, OverflowError):
        raise _bad(f"input {name!r}: data are not {spec.dtype} values") from None
    if array.size != count:
        raise _bad(f"input {name!r}: data has {array.size} values, shape {shape} needs {count}")
    return array.reshape(shape), False


def _check_shape(name: str, array: npt.NDArray[Any], spec: TensorSpec) -> None:
    if array.ndim != len(spec.dims):
        raise _bad(f"input {name!r}: rank {array.ndim} but the model wants {len(spec.dims)}")
    for axis, (got, want) in enumerate(zip(array.shape, spec.dims, strict=True)):
        if want is None:
            if got < 1:
                raise _bad(f"input {name!r}: dimension {axis} is {got}, must be >= 1")
        elif got != want:
            raise _bad(f"input {name!r}: dimension {axis} is {got}, the model wants {want}")


def decode_inputs(
    text: str, specs: tuple[TensorSpec, ...]
) -> tuple[dict[str, npt.NDArray[Any]], bool]:
    """Parse and validate one input message; returns the feeds and whether all were ``.npy``."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad("the input is not JSON") from None
    if (
        not isinstance(body, dict)
        or set(body) != {"inputs"}
        or not isinstance(body["inputs"], dict)
    ):
        raise _bad('the input must be {"inputs": {name: tensor, ...}}')
    given = body["inputs"]
    wanted = {s.name: s for s in specs}
    missing = sorted(set(wanted) - set(given))
    unknown = sorted(set(given) - set(wanted))
    if missing or unknown:
        raise _bad(f"input names: missing {missing}, unknown {unknown[:8]}")
    feeds: dict[str, npt.NDArray[Any]] = {}
    all_npy = True
    for name, spec in wanted.items():
        array, was_npy = _tensor(name, given[name], spec)
        _check_shape(name, array, spec)
        feeds[name] = array
        all_npy = all_npy and was_npy
    return feeds, all_npy


def _npy(array: npt.NDArray[Any]) -> str:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return binascii.b2a_base64(buffer.getvalue(), newline=False).decode("ascii")


def encode_outputs(outputs: Mapping[str, npt.NDArray[Any]], *, npy: bool) -> str:
    """The output message: every output tensor as JSON (or ``.npy``)."""
    body: dict[str, object] = {}
    for name, array in outputs.items():
        if npy:
            body[name] = {"npy": _npy(array)}
        else:
            body[name] = {
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "data": array.ravel().tolist(),
            }
    try:
        return json.dumps({"outputs": body}, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise RunError(
            ChannelError.MODEL_FAILED, "the output has non-finite values: send the input as npy"
        ) from None


def _dims(shape: object) -> tuple[int | None, ...]:
    if not isinstance(shape, list | tuple):
        return ()
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)


class OnnxRunner:
    """One onnxruntime session on the CPU."""

    def __init__(self, session: Any, errors: tuple[type[Exception], ...]) -> None:
        self._session = session
        self._errors = errors
        specs = []
        for node in session.get_inputs():
            dtype = DTYPES.get(str(node.type))
            if dtype is None:
                raise ModelError(f"model input {node.name!r} has unsupported type {node.type}")
            specs.append(TensorSpec(str(node.name), _dims(node.shape), dtype))
        self.inputs: tuple[TensorSpec, ...] = tuple(specs)
        self.output_names: tuple[str, ...] = tuple(str(o.name) for o in session.get_outputs())

    @classmethod
    def load(cls, path: Path) -> OnnxRunner:
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise ModelError("onnxruntime is not installed: no ONNX runner") from None
        state = ort.capi.onnxruntime_pybind11_state
        found = (getattr(state, n, None) for n in _ORT_ERRORS)
        errors: tuple[type[Exception], ...] = (
            *(e for e in found if isinstance(e, type) and issubclass(e, Exception)),
            RuntimeError,
            ValueError,
        )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: nothing about inputs on stderr
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except errors as exc:
            raise ModelError(
                f"onnxruntime could not load {path.name}: {type(exc).__name__}"
            ) from None
        return cls(session, errors)

    def run(self, text: str, *, emit: Callable[[str], None], cancel: threading.Event) -> str:
        del emit, cancel  # one ONNX run is one call: nothing to stream or interrupt
        feeds, npy = decode_inputs(text, self.inputs)
        try:
            values = self._session.run(None, feeds)
        except self._errors as exc:
            raise RunError(
                ChannelError.MODEL_FAILED, f"onnxruntime failed: {type(exc).__name__}"
            ) from None
        outputs = {
            name: np.asarray(value) for name, value in zip(self.output_names, values, strict=True)
        }
        return encode_outputs(outputs, npy=npy)

    def close(self) -> None:
        self._session = None
