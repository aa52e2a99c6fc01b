"""Job parameters: the ``["param", name, value]`` tags a cdvm/1 request may carry (NIP-90).

NIP-90: https://github.com/nostr-protocol/nips/blob/master/90.md ("param" tags)

The node checks every parameter before it launches anything, so a container never starts for
a job it would refuse; the container checks them again (it trusts nothing from the node but the
spec's shape). Unknown parameter names are refused rather than ignored: a parameter nobody
applied is a setting the requester believes in and nobody honoured. The same rules check the
``defaults`` of each model in the provider config (as TOML values rather than strings).

Names and values (all optional except ``model``):

=============  ==============================================  ==========================
name           value                                           runner
=============  ==============================================  ==========================
``model``      a model name the provider serves                any
``mode``       ``oneshot`` (end after the first answer) or     any
               ``chat``
``max_tokens`` integer 1 .. ``limits.max_output_tokens``        llama
``temperature`` number 0 .. 2                                  llama
``top_p``      number > 0 .. 1                                 llama
``top_k``      integer 0 .. 1000                               llama
``seed``       integer 0 .. 2**31 - 1                          llama
=============  ==============================================  ==========================
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

__all__ = ["DEFAULT_PARAMS", "MODES", "ParamError", "check_default", "check_param"]

MODES = ("oneshot", "chat")
_INT = re.compile(r"-?(0|[1-9][0-9]{0,18})")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,18})(\.[0-9]{1,18})?")
_MAX_SEED = 2**31 - 1


class ParamError(ValueError):
    """A parameter is unknown or its value is out of range (the message names it)."""


def _int_in(low: int, high: int) -> Callable[[str, int], None]:
    def check(value: str, _max_output_tokens: int) -> None:
        if not _INT.fullmatch(value) or not low <= int(value) <= high:
            raise ParamError(f"must be an integer from {low} to {high}")

    return check


def _number_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str, int], None]:
    def check(value: str, _max_output_tokens: int) -> None:
        if not _NUMBER.fullmatch(value):
            raise ParamError("must be a decimal number")
        number = float(value)
        too_low = number <= low if low_open else number < low
        if not math.isfinite(number) or too_low or number > high:
            bound = "above" if low_open else "from"
            raise ParamError(f"must be a number {bound} {low} up to {high}")

    return check


def _mode(value: str, _max_output_tokens: int) -> None:
    if value not in MODES:
        raise ParamError(f"must be one of {', '.join(MODES)}")


def _max_tokens(value: str, max_output_tokens: int) -> None:
    _int_in(1, max_output_tokens)(value, max_output_tokens)


def _any(_value: str, _max_output_tokens: int) -> None:
    return None


_RULES: dict[str, Callable[[str, int], None]] = {
    "model": _any,
    "mode": _mode,
    "max_tokens": _max_tokens,
    "temperature": _number_in(0.0, 2.0),
    "top_p": _number_in(0.0, 1.0, low_open=True),
    "top_k": _int_in(0, 1000),
    "seed": _int_in(0, _MAX_SEED),
}
#: The names a model's ``defaults`` table may set (everything but ``model``).
DEFAULT_PARAMS = frozenset(_RULES) - {"model"}


def check_param(name: str, value: str, *, max_output_tokens: int) -> None:
    """Raise :class:`ParamError` unless ``name`` is known and ``value`` is in range."""
    rule = _RULES.get(name)
    if rule is None:
        raise ParamError(f"unknown parameter {name[:32]!r}")
    try:
        rule(value, max_output_tokens)
    except ParamError as exc:
        raise ParamError(f"parameter {name!r} {exc}") from None


def check_default(name: str, value: object, *, max_output_tokens: int) -> None:
    """The same rules for a TOML value of a model's ``defaults`` table."""
    if name not in DEFAULT_PARAMS:
        raise ParamError(f"unknown parameter {name[:32]!r}")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ParamError(f"parameter {name!r} must be a string or a number")
    text = value if isinstance(value, str) else repr(value)
    check_param(name, text, max_output_tokens=max_output_tokens)
