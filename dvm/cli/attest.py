"""``cdvm attest``: verify SEV-SNP / simulated evidence and compute reference measurements.

Usage and exit codes: ``docs/attestation.md``. ``cdvm attest verify INPUT`` takes a raw
1184-byte report (binary or hex text; certificates with ``--cert``), an evidence bundle (the
content JSON of a kind-7100 event) or a whole kind-7100 event, and exits 0 when the evidence
verifies and the policy holds, 1 when it does not (every failure listed), 2 when the input is
unusable. ``cdvm attest measure`` prints the simulated runtime measurement (``--simulated``) or
an SEV-SNP launch measurement through the ``sev-snp-measure`` package (imported lazily).

The verification itself is :mod:`attestation`'s; this module only reads files, reads the clock
(the default ``--now``) and formats. Output goes through ``sys.stdout``/``sys.stderr``;
``sys.exit`` stays in :mod:`dvm.cli`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import attestation
from attestation import (
    SIMULATED_LABEL,
    AttestationError,
    Bundle,
    EvidenceRejected,
    Expected,
    ParseError,
    PolicyViolation,
    SnpItem,
    Trust,
    UntrustedRoot,
    item_product,
    parse_bundle,
    snp_item_from_certs,
    verify_evidence,
    verify_snp_item,
)
from attestation.simulated import measure_runtime
from attestation.snp.abi import REPORT_SIZE_BYTES, Product, Report, parse_report
from attestation.snp.crl import CrlMode, CrlPolicy
from attestation.snp.kds import DEFAULT_CACHE_DIR, cached, fetch_https
from attestation.snp.validate import DEFAULT_POLICY, Policy, load_policy, warnings
from dvm.cdvm.kind7100 import parse_attestation
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event

from .paths import resolved

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNUSABLE", "RawReport", "read_input", "register"]

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
_PRODUCTS = {p.value.lower(): p for p in Product}


@dataclass(frozen=True, slots=True)
class RawReport:
    """A bare 1184-byte report (nothing binds it to a job)."""

    report: bytes


def read_input(data: bytes) -> RawReport | Bundle:
    """Tell a raw report (binary or hex), a bundle JSON and a kind-7100 event JSON apart.

    Raises :class:`~attestation.errors.ParseError` (only) for anything else.
    """
    if len(data) == REPORT_SIZE_BYTES and data[:1] != b"{":
        parse_report(data)
        return RawReport(bytes(data))
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ParseError(f"input ({len(data)} bytes) is not a report, bundle or event") from None
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            raise ParseError("input looks like JSON but does not parse") from None
        if isinstance(body, dict) and "sig" in body and "kind" in body:
            try:
                parsed = parse_attestation(Event.from_json(text))
            except NostrError as exc:
                raise ParseError(f"not a valid kind-7100 attestation event: {exc}") from None
            return parse_bundle(parsed.event.content)
        return parse_bundle(text)
    compact = "".join(text.split())
    try:
        raw = bytes.fromhex(compact)
    except ValueError:
        raise ParseError(f"input ({len(data)} bytes) is not a report, bundle or event") from None
    parse_report(raw)
    return RawReport(raw)


def _now(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise ParseError(f"--now must be a UNIX time in seconds, got {value!r}") from None


def _hex_arg(value: str | None) -> str | None:
    return None if value is None else value.strip().lower()


def _decoded(report: Report, product: Product | None) -> dict[str, Any]:
    policy = {f.name: getattr(report.policy, f.name) for f in fields(report.policy)}
    return {
        "product": None if product is None else product.value,
        "signer": report.key_info.signing_key.value,
        "version": report.version,
        "measurement": report.measurement.hex(),
        "report_data": report.report_data.hex(),
        "host_data": report.host_data.hex(),
        "chip_id": report.chip_id.hex(),
        "vmpl": report.vmpl,
        "policy": {"raw": hex(report.policy.encode()), **policy},
        "reported_tcb": {
            k.removesuffix("SPL"): v for k, v in report.reported_tcb.components().items()
        },
        "current_version": str(report.current_version),
        "platform_info": report.platform_info.encode(),
        "cpuid": None if report.cpuid is None else str(report.cpuid),
    }


def _reasons(exc: AttestationError) -> list[str]:
    if isinstance(exc, EvidenceRejected):
        return [r for e in exc.errors for r in _reasons(e)]
    if isinstance(exc, PolicyViolation):
        return [str(f) for f in exc.failures]
    return [f"{type(exc).__name__}: {exc}"]


def _product_of(item: SnpItem) -> Product | None:
    try:
        return item_product(item)
    except AttestationError:
        return None


def _verify(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    now = _now(args.now)
    policy = DEFAULT_POLICY if args.policy is None else load_policy(Path(args.policy).read_text())
    if args.measurement:
        try:
            pins = frozenset(bytes.fromhex(m) for m in args.measurement)
        except ValueError:
            raise ParseError("--measurement must be hex") from None
        policy = Policy(**{**_policy_kwargs(policy), "measurements": pins})
    trust = Trust(
        simulated_roots=tuple(Path(p).read_bytes() for p in args.trust_simulated), crl=_crl(args)
    )
    product = None if args.product is None else _PRODUCTS[args.product]
    parsed = read_input(Path(args.input).read_bytes())
    certs = [Path(p).read_bytes() for p in args.cert]
    if isinstance(parsed, RawReport):
        if not certs:
            raise ParseError(
                "a raw report needs --cert FILE (its VCEK or VLEK; AMD KDS is not asked)"
            )
        item = snp_item_from_certs(parsed.report, certs, trust=trust, product=product)
        bundle = None
    else:
        item, bundle = parsed.cpu, parsed
    out: dict[str, Any] = {"verified": False, "tee": item.type.value}
    if item.simulated:
        out["label"] = SIMULATED_LABEL
    out |= _decoded(parse_report(item.report, product=item.product), _product_of(item))
    failures: list[str] = []
    notes: list[str] = []
    try:
        if bundle is None:
            verified = verify_snp_item(item, policy, now=now, trust=trust)
            notes = [w for w in warnings(policy) if not w.startswith("REPORT_DATA")]
            notes.append("REPORT_DATA is not bound to anything: a raw report names no job or key")
            notes += [verified.revocation.note] if verified.revocation.note else []
        else:
            expected = Expected(
                job=_hex_arg(args.job),
                nonce=_hex_arg(args.nonce),
                provider=_hex_arg(args.provider),
                container_pubkey=_hex_arg(args.container),
                model_sha256=_hex_arg(args.model_sha256),
            )
            result = verify_evidence(bundle, policy, now=now, trust=trust, expected=expected)
            out["tee"] = result.tee
            out["claims"] = result.claims
            notes = list(result.warnings)
    except (EvidenceRejected, UntrustedRoot) as exc:
        failures = _reasons(exc)
    if bundle is not None:
        out.setdefault("claims", bundle.claims)
    out |= {"verified": not failures, "failures": failures, "warnings": notes}
    return out, EXIT_FAILED if failures else EXIT_OK


def _crl(args: argparse.Namespace) -> CrlPolicy:
    """--crl FILE / --crl-fetch require a current AMD CRL; without either, none is checked."""
    if not (args.crl or args.crl_fetch):
        return CrlPolicy(CrlMode.OFF)
    mode = CrlMode.ACCEPT_UNAVAILABLE if args.crl_accept_unavailable else CrlMode.REQUIRE
    fetch = cached(fetch_https, DEFAULT_CACHE_DIR.expanduser()) if args.crl_fetch else None
    return CrlPolicy(mode, fetch, tuple(Path(p).read_bytes() for p in args.crl))


def _policy_kwargs(policy: Policy) -> dict[str, Any]:
    return {f.name: getattr(policy, f.name) for f in fields(policy)}


def _print_text(out: dict[str, Any]) -> None:
    write = sys.stdout.write
    if "label" in out:
        write(f"{out['label']}\n")
    write(f"{'VERIFIED' if out['verified'] else 'NOT VERIFIED'} ({out['tee']})\n")
    for name in ("product", "signer", "version", "measurement", "report_data", "host_data"):
        write(f"  {name}: {out[name]}\n")
    write(f"  chip_id: {out['chip_id']}\n  vmpl: {out['vmpl']}\n")
    write(f"  policy: {out['policy']['raw']} (debug {out['policy']['debug']})\n")
    write(f"  reported_tcb: {out['reported_tcb']}\n")
    if "claims" in out:
        write(f"  claims: {json.dumps(out['claims'], sort_keys=True)}\n")
    for failure in out["failures"]:
        write(f"FAIL {failure}\n")
    for note in out["warnings"]:
        write(f"warning: {note}\n")


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        out, code = _verify(args)
    except (AttestationError, OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"cdvm attest verify: unusable input: {exc}\n")
        return EXIT_UNUSABLE
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2, sort_keys=True) + "\n")
    else:
        _print_text(out)
    return code


def _cmd_measure(args: argparse.Namespace) -> int:
    if args.simulated:
        root = Path(args.root) if args.root else Path(attestation.__file__).resolve().parent.parent
        try:
            sys.stdout.write(measure_runtime(root).hex() + "\n")
        except (AttestationError, OSError) as exc:
            sys.stderr.write(f"cdvm attest measure: {exc}\n")
            return EXIT_UNUSABLE
        return EXIT_OK
    missing = [n for n in ("ovmf", "vcpus", "vcpu_type") if getattr(args, n) is None]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        sys.stderr.write(f"cdvm attest measure: give --simulated, or {flags}\n")
        return EXIT_UNUSABLE
    try:
        guest = importlib.import_module("sevsnpmeasure.guest")
        modes = importlib.import_module("sevsnpmeasure.sev_mode")
        cpus = importlib.import_module("sevsnpmeasure.vcpu_types")
    except ImportError:
        sys.stderr.write(
            "cdvm attest measure: the SEV-SNP launch measurement needs the 'sev-snp-measure' "
            "package: pip install 'sev-snp-measure>=0.0.13'\n"
        )
        return EXIT_UNUSABLE
    if args.vcpu_type not in cpus.CPU_SIGS:
        sys.stderr.write(f"cdvm attest measure: unknown --vcpu-type {args.vcpu_type!r}\n")
        return EXIT_UNUSABLE
    try:
        digest = guest.calc_launch_digest(
            modes.SevMode.SEV_SNP,
            args.vcpus,
            cpus.CPU_SIGS[args.vcpu_type],
            args.ovmf,
            args.kernel,
            args.initrd,
            args.append,
            args.guest_features,
        )
    except (RuntimeError, ValueError, OSError, AssertionError) as exc:
        sys.stderr.write(f"cdvm attest measure: {type(exc).__name__}: {exc}\n")
        return EXIT_UNUSABLE
    sys.stdout.write(bytes(digest).hex() + "\n")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``attest verify`` and ``attest measure`` to the ``cdvm`` parser's subcommands."""
    attest = subparsers.add_parser("attest", help="verify evidence, compute reference values")
    sub = attest.add_subparsers(dest="attest_command", required=True)

    verify = sub.add_parser("verify", help="verify a report, an evidence bundle or a 7100 event")
    verify.add_argument(
        "input", type=resolved, help="report (binary or hex), bundle JSON or kind-7100 JSON"
    )
    verify.add_argument(
        "--cert", action="append", default=[], type=resolved, help="VCEK/VLEK, ASK, ARK file"
    )
    verify.add_argument(
        "--policy", type=resolved, help="policy TOML ([snp] table, docs/attestation-snp.md)"
    )
    verify.add_argument("--now", help="verify as of this UNIX time (default: now)")
    verify.add_argument(
        "--trust-simulated",
        action="append",
        default=[],
        type=resolved,
        metavar="ROOT.pem",
        help="trust this simulated ARK (simulated evidence is refused otherwise)",
    )
    verify.add_argument("--product", choices=sorted(_PRODUCTS), help="product of a v2 report")
    verify.add_argument(
        "--crl",
        action="append",
        default=[],
        type=resolved,
        metavar="FILE",
        help="AMD CRL (DER/PEM) to require",
    )
    verify.add_argument("--crl-fetch", action="store_true", help="fetch AMD's CRL from KDS")
    verify.add_argument(
        "--crl-accept-unavailable",
        action="store_true",
        help="with --crl-fetch: a CRL that cannot be fetched is reported, not fatal",
    )
    verify.add_argument(
        "--measurement", action="append", default=[], help="pin the MEASUREMENT (hex, repeatable)"
    )
    for name in ("job", "nonce", "provider", "container", "model-sha256"):
        verify.add_argument(f"--{name}", help=f"expected claims value ({name}, hex)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(func=_cmd_verify)

    measure = sub.add_parser("measure", help="print a reference MEASUREMENT (hex)")
    measure.add_argument("--simulated", action="store_true", help="the simulated runtime's")
    measure.add_argument(
        "--root", type=resolved, help="checkout or site-packages holding the runtime packages"
    )
    measure.add_argument("--ovmf", type=resolved, help="OVMF firmware file")
    measure.add_argument("--kernel", type=resolved, help="kernel file")
    measure.add_argument("--initrd", type=resolved, help="initrd file")
    measure.add_argument("--append", help="kernel command line")
    measure.add_argument("--vcpus", type=int, help="number of vCPUs")
    measure.add_argument("--vcpu-type", help="QEMU vCPU type, e.g. EPYC-Milan, EPYC-Genoa")
    measure.add_argument(
        "--guest-features", type=lambda v: int(v, 0), default=0x1, help="SEV features (0x1)"
    )
    measure.set_defaults(func=_cmd_measure)
