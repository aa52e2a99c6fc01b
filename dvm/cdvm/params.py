"""Job parameters: the one table of what a cdvm/1 job may set (NIP-90 ``param`` tags).

NIP-90: https://github.com/nostr-protocol/nips/blob/master/90.md ("param" tags)

:data:`PARAMS` is the table: for each parameter its name, kind, range, who may set it (a
request's ``["param", name, value]`` tag, the provider's model ``defaults``, or both) and which
runner applies it. Both sides apply it, so they accept exactly the same parameters:

* the node: :func:`check_param` for each tag of a request (intake, before anything is
  launched, so a container never starts for a job it would refuse) and :func:`check_default`
  for each key of a model's ``defaults`` in the provider config (at start);
* the container (which trusts nothing from the node but the spec's shape):
  :func:`parse_param` / :func:`parse_default`, the same rules returning typed values, and
  :func:`load_options` for the options a runner takes when it loads the model.

Unknown names are refused rather than ignored: a parameter nobody applied is a setting the
requester (or the provider) believes in and nobody honoured. For the same reason ``model`` and
``mode`` may not be model defaults (the container reads them from the request only), and the
load options may not come from a request (the model is loaded once, with the provider's
settings, and its memory is the provider's to size).

Values. A request's values are strings: an integer is decimal without sign ``+`` or leading
zeros (``-?(0|[1-9][0-9]{0,18})``), a number a plain decimal (no exponent, no ``nan``/``inf``).
A default is a TOML value (the node) or its JSON copy in the job spec (the container): an
integer parameter takes an integer (not a bool, not ``40.0``), a number parameter a finite
integer or float, a choice a string; a string default is read as a request value would be.

The table (the ranges are the documented ones, docs/node.md §2 and docs/container.md):

=============== ========== ======================================== ========== =================
name            kind       range                                    runner     set by
=============== ========== ======================================== ========== =================
``model``       text       a model name the provider serves         any        request
``mode``        choice     ``oneshot`` or ``chat``                  any        request
``max_tokens``  integer    1 .. ``limits.max_output_tokens``        llama      request, defaults
``temperature`` number     0 .. 2                                   llama      request, defaults
``top_p``       number     above 0 .. 1                             llama      request, defaults
``top_k``       integer    0 .. 1000                                llama      request, defaults
``seed``        integer    0 .. 2**31 - 1                           llama      request, defaults
``n_ctx``       integer    1 .. 2**20                               llama      defaults
``n_threads``   integer    1 .. 1024                                llama      defaults
=============== ========== ======================================== ========== =================

Why these ranges: ``max_tokens`` above the provider's cap is refused, never silently capped
(the requester would believe in a length nobody honoured). ``temperature`` 0 is greedy and
above 2 is noise. ``top_p`` 0 would keep no token. ``top_k`` 0 means every token (llama.cpp)
and above 1000 is no different in practice. ``seed`` stays within 31 bits: portable to every
client's signed integers and clear of llama.cpp's ``0xFFFFFFFF`` "random seed" sentinel.
``n_ctx`` 0 (llama.cpp: the model's own trained context) is refused so that the memory a job
takes is written in the config; 2**20 tokens is beyond any current GGUF model's context.
``n_threads`` only needs to catch typos; without it llama.cpp picks its own.

The runner column says who applies a parameter. It is not a refusal: an ONNX model ignores the
sampling parameters of a request (the cdvm/1 wire accepts them for any model).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "DEFAULT_PARAMS",
    "DESCRIPTIONS",
    "MODES",
    "PARAMS",
    "REQUEST_PARAMS",
    "Applies",
    "Kind",
    "ParamError",
    "ParamRule",
    "Scope",
    "Value",
    "check_default",
    "check_param",
    "load_options",
    "parse_default",
    "parse_param",
]

MODES = ("oneshot", "chat")
_INT = re.compile(r"-?(0|[1-9][0-9]{0,18})")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,18})(\.[0-9]{1,18})?")

#: A parsed parameter value: text and choices as ``str``, integers as ``int``, numbers as ``float``.
Value = str | int | float


class ParamError(ValueError):
    """A parameter is unknown, set where it may not be, or out of range (the message names it)."""


class Kind(StrEnum):
    TEXT = "text"
    CHOICE = "choice"
    INTEGER = "integer"
    NUMBER = "number"


class Scope(StrEnum):
    """Who may set a parameter."""

    REQUEST = "request"  # only a request's param tag
    EITHER = "request-or-defaults"  # a request, over the model's defaults
    DEFAULTS = "defaults"  # only the provider's model defaults (load options)


class Applies(StrEnum):
    """The runner that applies a parameter (``container.launch.RunnerKind`` values, or any)."""

    ANY = "any"
    LLAMA = "llama"
    ONNX = "onnx"


@dataclass(frozen=True, slots=True)
class ParamRule:
    """One row of :data:`PARAMS`; ``high`` None means ``limits.max_output_tokens``."""

    name: str
    kind: Kind
    scope: Scope
    runner: Applies
    low: int = 0
    high: int | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()

    def _high(self, max_output_tokens: int) -> int:
        return max_output_tokens if self.high is None else self.high

    def _in_range(self, number: int | float, max_output_tokens: int) -> None:
        low, high = self.low, self._high(max_output_tokens)
        if self.kind is Kind.INTEGER:
            if not low <= number <= high:
                raise ParamError(f"must be an integer from {low} to {high}")
            return
        finite = isinstance(number, int) or math.isfinite(number)  # a JSON int may be huge
        too_low = number <= low if self.low_open else number < low
        if not finite or too_low or number > high:
            bound = "above" if self.low_open else "from"
            raise ParamError(f"must be a number {bound} {float(low)} up to {float(high)}")

    def parse_text(self, value: str, *, max_output_tokens: int) -> Value:
        """A request's (string) value, typed; raises :class:`ParamError` without the name."""
        if self.kind is Kind.TEXT:
            return value
        if self.kind is Kind.CHOICE:
            if value not in self.choices:
                raise ParamError(f"must be one of {', '.join(self.choices)}")
            return value
        if self.kind is Kind.INTEGER:
            if not _INT.fullmatch(value):
                raise ParamError(
                    f"must be an integer from {self.low} to {self._high(max_output_tokens)}"
                )
            self._in_range(int(value), max_output_tokens)
            return int(value)
        if not _NUMBER.fullmatch(value):
            raise ParamError("must be a decimal number")
        number = float(value)
        self._in_range(number, max_output_tokens)
        return number

    def parse_value(self, value: object, *, max_output_tokens: int) -> Value:
        """A default's (TOML or JSON) value, typed; raises :class:`ParamError` without the name."""
        if isinstance(value, str):
            return self.parse_text(value, max_output_tokens=max_output_tokens)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError("must be a string or a number")
        if self.kind is Kind.INTEGER:
            if not isinstance(value, int):
                raise ParamError(
                    f"must be an integer from {self.low} to {self._high(max_output_tokens)}"
                )
            self._in_range(value, max_output_tokens)
            return value
        if self.kind is Kind.NUMBER:
            self._in_range(value, max_output_tokens)
            return float(value)
        if self.kind is Kind.CHOICE:
            raise ParamError(f"must be one of {', '.join(self.choices)}")
        raise ParamError("must be a string")


_LLAMA = Applies.LLAMA
_EITHER = Scope.EITHER
#: The table, by name (see the module docstring for the ranges and why).
PARAMS: Mapping[str, ParamRule] = MappingProxyType(
    {
        rule.name: rule
        for rule in (
            ParamRule("model", Kind.TEXT, Scope.REQUEST, Applies.ANY),
            ParamRule("mode", Kind.CHOICE, Scope.REQUEST, Applies.ANY, choices=MODES),
            ParamRule("max_tokens", Kind.INTEGER, _EITHER, _LLAMA, low=1, high=None),
            ParamRule("temperature", Kind.NUMBER, _EITHER, _LLAMA, low=0, high=2),
            ParamRule("top_p", Kind.NUMBER, _EITHER, _LLAMA, low=0, high=1, low_open=True),
            ParamRule("top_k", Kind.INTEGER, _EITHER, _LLAMA, low=0, high=1000),
            ParamRule("seed", Kind.INTEGER, _EITHER, _LLAMA, low=0, high=2**31 - 1),
            ParamRule("n_ctx", Kind.INTEGER, Scope.DEFAULTS, _LLAMA, low=1, high=2**20),
            ParamRule("n_threads", Kind.INTEGER, Scope.DEFAULTS, _LLAMA, low=1, high=1024),
        )
    }
)
#: One line per parameter for people (the NIP-89 announcement's ``nip90Params`` descriptions).
DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "model": "the model to run: one of the names this provider serves",
        "mode": "oneshot: one answer per job; chat: a conversation with the same container",
        "max_tokens": "the most tokens generated per answer (above the provider's cap: refused)",
        "temperature": "sampling temperature: 0 is greedy, higher is more varied",
        "top_p": "nucleus sampling: keep the most likely tokens up to this probability mass",
        "top_k": "keep only the k most likely tokens (0: all of them)",
        "seed": "the sampling seed, for repeatable answers",
        "n_ctx": "the model's context size in tokens (the provider's setting)",
        "n_threads": "the CPU threads the model runs on (the provider's setting)",
    }
)
#: The names a request's ``param`` tags may carry.
REQUEST_PARAMS = frozenset(n for n, r in PARAMS.items() if r.scope is not Scope.DEFAULTS)
#: The names a model's ``defaults`` table may set.
DEFAULT_PARAMS = frozenset(n for n, r in PARAMS.items() if r.scope is not Scope.REQUEST)


def _rule(name: str, allowed: frozenset[str]) -> ParamRule:
    rule = PARAMS.get(name)
    if rule is None:
        raise ParamError(f"unknown parameter {name[:32]!r}")
    if name not in allowed:
        if rule.scope is Scope.DEFAULTS:
            raise ParamError(f"parameter {name!r} is set only by the provider's model defaults")
        raise ParamError(f"parameter {name!r} is set only by the request, not model defaults")
    return rule


def parse_param(name: str, value: str, *, max_output_tokens: int) -> Value:
    """A request's ``["param", name, value]``, typed; :class:`ParamError` names the parameter."""
    rule = _rule(name, REQUEST_PARAMS)
    try:
        return rule.parse_text(value, max_output_tokens=max_output_tokens)
    except ParamError as exc:
        raise ParamError(f"parameter {name!r} {exc}") from None


def parse_default(name: str, value: object, *, max_output_tokens: int) -> Value:
    """A key of a model's ``defaults`` (a TOML or JSON value), typed; the same rules."""
    rule = _rule(name, DEFAULT_PARAMS)
    try:
        return rule.parse_value(value, max_output_tokens=max_output_tokens)
    except ParamError as exc:
        raise ParamError(f"parameter {name!r} {exc}") from None


def check_param(name: str, value: str, *, max_output_tokens: int) -> None:
    """Raise :class:`ParamError` unless a request may set ``name`` to ``value``."""
    parse_param(name, value, max_output_tokens=max_output_tokens)


def check_default(name: str, value: object, *, max_output_tokens: int) -> None:
    """Raise :class:`ParamError` unless a model's ``defaults`` may set ``name`` to ``value``."""
    parse_default(name, value, max_output_tokens=max_output_tokens)


def load_options(defaults: Mapping[str, object], *, runner: str) -> dict[str, Value]:
    """The load options (``defaults``-only parameters) that ``runner`` applies, typed.

    Only those keys are read (the rest are checked by :func:`parse_default`); a bad value
    raises :class:`ParamError`.
    """
    options: dict[str, Value] = {}
    for name, value in defaults.items():
        rule = PARAMS.get(name)
        if rule is None or rule.scope is not Scope.DEFAULTS:
            continue
        if rule.runner not in (Applies.ANY, runner):
            continue
        try:
            # Load options have fixed bounds: no limit applies (0 would refuse, failing closed).
            options[name] = rule.parse_value(value, max_output_tokens=0)
        except ParamError as exc:
            raise ParamError(f"parameter {name!r} {exc}") from None
    return options
