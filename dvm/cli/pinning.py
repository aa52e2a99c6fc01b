"""The requester's pins on the command line: the flags of ``cdvm submit`` / ``cdvm chat``.

Spec: DESIGN §3.5, ``docs/client.md`` ("Pins and reference values"). Fail closed: every job,
simulated included, is refused unless its measurement, image (``sev-snp`` kinds), model sha256
and, for ``sev-snp+nvidia-h100``, GPU measurements are each pinned (:mod:`dvm.client.pins`). The
flags:

- ``--measurement HEX``, ``--model-sha256 HEX`` (repeatable; ``--trust-image`` is
  :mod:`dvm.cli.jobs`'), explicit values the requester computed itself;
- ``--gpu-measurements FILE`` (repeatable): expected GPU measurement blocks as JSON
  (:func:`dvm.cli.gpu_refs.load_gpu_measurements`), e.g. built from RIMs you authenticated;
- ``--trust-config PATH``: the publishers trusted by ``cdvm trust add`` (default
  ``~/.config/cdvm/trust.toml``); their kind-37100 reference values are fetched from the job's
  relays before the request is published (:func:`with_references`);
- ``--require-publishers K``: K distinct trusted publishers must vouch for a value;
- ``--accept-unpinned measurement,image,model,gpu``: accept those values unpinned, with a warning
  printed before anything is published and an ``UNPINNED`` note in the verification.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from dvm.client import JobOptions, OptionsError
from dvm.client.pins import PinKind, Pins
from dvm.client.references import fetch_references

from .gpu_refs import GpuFileError, load_gpu_measurements
from .paths import resolved
from .trust import DEFAULT_TRUST_FILE, TrustFileError, load_trusted, resolve

__all__ = ["add_pin_arguments", "pins_from_args", "with_references"]

_FETCH_TIMEOUT_S = 15.0


def _accept(items: list[str]) -> frozenset[PinKind]:
    kinds: set[PinKind] = set()
    for item in items:
        for word in filter(None, (w.strip() for w in item.split(","))):
            if word not in {k.value for k in PinKind}:
                raise OptionsError(
                    f"--accept-unpinned takes {','.join(k.value for k in PinKind)}, "
                    f"not {word[:30]!r}"
                )
            kinds.add(PinKind(word))
    return frozenset(kinds)


def pins_from_args(args: argparse.Namespace) -> Pins:
    """The :class:`Pins` the flags name (references are added by :func:`with_references`)."""
    try:
        trusted = load_trusted(resolve(args.trust_config))
    except TrustFileError as exc:
        raise OptionsError(f"--trust-config: {exc}") from None
    if args.require_publishers < 1:
        raise OptionsError("--require-publishers must be at least 1")
    try:
        gpu = tuple(load_gpu_measurements(path) for path in args.gpu_measurements)
    except GpuFileError as exc:
        raise OptionsError(str(exc)) from None
    return Pins(
        measurements=frozenset(m.strip().lower() for m in args.measurement),
        model_sha256s=frozenset(m.strip().lower() for m in args.model_sha256),
        gpu_measurements=gpu,
        trusted_publishers=frozenset(key.hex() for key in trusted),
        require_publishers=args.require_publishers,
        accept_unpinned=_accept(args.accept_unpinned),
    )


async def with_references(options: JobOptions, *, command: str, quiet: bool) -> JobOptions:
    """``options`` with the trusted publishers' reference values from the job's relays."""
    pins = options.pins
    for kind in sorted(pins.accept_unpinned):
        sys.stderr.write(
            f"cdvm {command}: WARNING: --accept-unpinned {kind}: an unpinned {kind} will be "
            "accepted; nothing you chose then vouches for what runs your job\n"
        )
    if not pins.trusted_publishers:
        return options
    timeout_s = min(options.timeouts.attestation_s, _FETCH_TIMEOUT_S)
    fetched = await fetch_references(options.relays, pins.trusted_publishers, timeout_s=timeout_s)
    if not quiet:
        publishers = {r.publisher for r in fetched.references}
        sys.stderr.write(
            f"reference values: {len(fetched.references)} release(s) from {len(publishers)} of "
            f"your {len(pins.trusted_publishers)} trusted publisher(s) on the job's relays\n"
        )
        for line in fetched.skipped:
            sys.stderr.write(f"reference values: skipped {line}\n")
        if not fetched.complete:
            sys.stderr.write(
                f"reference values: not every relay answered within {timeout_s:g} s; "
                "a value they would have vouched for is refused\n"
            )
    return dataclasses.replace(
        options, pins=dataclasses.replace(pins, references=fetched.references)
    )


def add_pin_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the pin flags to ``submit`` / ``chat``."""
    parser.add_argument(
        "--measurement",
        action="append",
        default=[],
        metavar="HEX",
        help="pin the launch measurement (96 hex, from cdvm attest measure; repeatable)",
    )
    parser.add_argument(
        "--model-sha256",
        action="append",
        default=[],
        metavar="HEX",
        help="pin the model file's sha256 (64 hex; repeatable)",
    )
    parser.add_argument(
        "--gpu-measurements",
        action="append",
        default=[],
        type=resolved,
        metavar="FILE",
        help="GPU jobs: pin the expected GPU measurement blocks (JSON; repeatable)",
    )
    parser.add_argument(
        "--trust-config",
        type=resolved,
        metavar="PATH",
        help=f"trusted reference-value publishers (cdvm trust; default {DEFAULT_TRUST_FILE})",
    )
    parser.add_argument(
        "--require-publishers",
        type=int,
        default=1,
        metavar="K",
        help="K distinct trusted publishers must vouch for each value (default 1)",
    )
    parser.add_argument(
        "--accept-unpinned",
        action="append",
        default=[],
        metavar="LIST",
        help="DANGEROUS: accept these values unpinned (measurement,image,model,gpu)",
    )
