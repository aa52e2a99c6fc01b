"""``cdvm refs publish`` and ``cdvm refs show``: reference values as signed Nostr events.

Spec: DESIGN §3.5 and §5, ``docs/protocol.md`` §9 (kind 37100, :mod:`dvm.cdvm.refs`),
``docs/client.md`` ("Pins and reference values"), ``docs/deploy.md`` §5.

``publish`` builds one release's reference values and signs them with the publisher's key
(``--key FILE``, an nsec as ``cdvm keygen`` writes it), then publishes the event to every
``--relay`` (``--out FILE`` also writes the signed event; ``--no-publish`` only writes it). The
launch measurements come from ``cdvm attest measure``:

- ``--simulated [--root DIR]`` measures the simulated runtime here (the same computation as
  ``cdvm attest measure --simulated``), TEE kind ``simulated``;
- otherwise each ``--measurement HEX:PRODUCT:VCPUS:VCPU_TYPE`` is one output of ``cdvm attest
  measure --ovmf ... --vcpus N --vcpu-type T`` for that product, and ``--ovmf``, ``--kernel``,
  ``--initrd``, ``--append`` and ``--guest-features`` are the inputs it was computed from: their
  SHA-256 go into the event so anyone can check they recompute the same value;
- for ``--tee sev-snp+nvidia-h100`` also the GPU reference measurements, at least one of
  ``--gpu-rims DRIVER_RIM VBIOS_RIM`` (NVIDIA's RIM files, reduced to expected blocks) or
  ``--gpu-measurements FILE`` (expected blocks as JSON), each repeatable, for
  ``--gpu-architecture`` (default ``GH100``): :mod:`dvm.cli.gpu_refs`.

``show`` prints the reference values on ``--relay`` (all publishers', or ``--publisher``'s only),
newest per address, and the events it could not parse. Exit codes: 0 ok; 1 nothing accepted the
event / nothing found; 2 usage. ``sys.exit`` stays in :mod:`dvm.cli.main`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import importlib.metadata
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attestation
from attestation.errors import AttestationError
from attestation.simulated import measure_runtime
from attestation.snp.abi import Product
from attestation.snp.validate import TcbFloor
from dvm.cdvm.refs import (
    REFERENCE_VALUES_KIND,
    LaunchInputs,
    LaunchMeasurement,
    ModelHash,
    PublishedReference,
    ReferenceValues,
    SourceRef,
    build_reference_event,
    parse_reference_event,
)
from dvm.client.pins import latest_references
from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip19 import decode_nsec, encode_npub
from dvm.nostr.nip90 import TeeKind
from dvm.relay import RelayError, RelayPool

from .gpu_refs import GpuFileError, add_gpu_arguments, gpu_entries, render_gpu
from .paths import resolved
from .trust import TrustFileError, parse_publisher

__all__ = ["RefsUsageError", "build_values", "register", "render_reference"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_PRODUCTS = {p.value.lower(): p for p in Product}
_TCB_NAMES = ("fmc", "bl", "tee", "snp", "ucode")


class RefsUsageError(Exception):
    """Unusable ``cdvm refs`` arguments (exit 2)."""


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _runtime_version() -> str:
    try:
        return importlib.metadata.version("confidential-dvm")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _package_root() -> Path:
    return Path(attestation.__file__).resolve().parent.parent


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(root), "rev-parse", "HEAD"],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _sha256_file(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise RefsUsageError(f"{flag} {path}: {exc.strerror}") from None


def _measurement_entry(spec: str, inputs: LaunchInputs) -> LaunchMeasurement:
    parts = spec.split(":")
    if len(parts) != 4:
        raise RefsUsageError(
            f"--measurement {spec[:120]!r} is not HEX:PRODUCT:VCPUS:VCPU_TYPE "
            "(e.g. <96 hex>:Genoa:3:EPYC-Genoa)"
        )
    value, product, vcpus, vcpu_type = parts
    if product.lower() not in _PRODUCTS or not vcpus.isdecimal():
        raise RefsUsageError(f"--measurement {spec[:120]!r}: unknown product or vCPU count")
    return LaunchMeasurement(
        value.strip().lower(), _PRODUCTS[product.lower()], int(vcpus), vcpu_type, inputs
    )


def _min_tcb(spec: str) -> tuple[Product, TcbFloor]:
    product, sep, rest = spec.partition(":")
    if not sep or product.lower() not in _PRODUCTS:
        raise RefsUsageError(f"--min-tcb {spec[:80]!r} is not PRODUCT:bl=N,tee=N,snp=N,ucode=N")
    parts: dict[str, int] = {}
    for item in rest.split(","):
        name, eq, number = item.partition("=")
        if not eq or name not in _TCB_NAMES or not number.isdecimal():
            raise RefsUsageError(f"--min-tcb {spec[:80]!r}: {item[:20]!r} is not NAME=N")
        parts[name] = int(number)
    return _PRODUCTS[product.lower()], TcbFloor(**parts)


def _model(spec: str) -> ModelHash:
    name, sep, digest = spec.rpartition("=")
    if not sep:
        raise RefsUsageError(f"--model {spec[:80]!r} is not NAME=SHA256")
    return ModelHash(name, digest.strip().lower())


def build_values(args: argparse.Namespace) -> ReferenceValues:
    """The :class:`ReferenceValues` the ``publish`` arguments describe (raises usage errors)."""
    tee = args.tee or (TeeKind.SIMULATED.value if args.simulated else None)
    if tee is None:
        raise RefsUsageError("give --tee (or --simulated for the simulated runtime)")
    if args.simulated != (tee == TeeKind.SIMULATED.value):
        raise RefsUsageError("--simulated goes with --tee simulated, and only with it")
    root = Path(args.root) if args.root else _package_root()
    version = args.runtime_version or _runtime_version()
    if args.simulated:
        if args.measurement:
            raise RefsUsageError("--simulated measures the runtime here: no --measurement")
        try:
            measured = measure_runtime(root).hex()
        except (AttestationError, OSError) as exc:
            raise RefsUsageError(f"cannot measure the simulated runtime: {exc}") from None
        entries: tuple[LaunchMeasurement, ...] = (LaunchMeasurement(measured),)
        recipe = args.recipe or (
            "cdvm attest measure --simulated --root <a checkout of source.commit> "
            "(attestation/simulated/measure.py; docs/attestation.md)"
        )
    else:
        if not args.measurement:
            raise RefsUsageError("give at least one --measurement HEX:PRODUCT:VCPUS:VCPU_TYPE")
        inputs = LaunchInputs(
            ovmf_sha256=_sha256_file(args.ovmf, "--ovmf"),
            kernel_sha256=_sha256_file(args.kernel, "--kernel"),
            initrd_sha256=_sha256_file(args.initrd, "--initrd"),
            cmdline_sha256=None
            if args.append is None
            else hashlib.sha256(args.append.encode("utf-8")).hexdigest(),
            guest_features=args.guest_features,
        )
        entries = tuple(_measurement_entry(spec, inputs) for spec in args.measurement)
        recipe = args.recipe or (
            "cdvm attest measure --ovmf OVMF --kernel KERNEL --initrd INITRD --append CMDLINE "
            "--vcpus N --vcpu-type T (sev-snp-measure; docs/deploy.md §5), files with the "
            "SHA-256 in inputs"
        )
    commit = args.source_commit or _git_commit(root)
    gpu_given = bool(args.gpu_rims or args.gpu_measurements)
    if gpu_given != (tee == TeeKind.SEV_SNP_NVIDIA_H100.value):
        raise RefsUsageError(
            f"--tee {TeeKind.SEV_SNP_NVIDIA_H100.value} needs --gpu-rims DRIVER_RIM VBIOS_RIM or "
            "--gpu-measurements FILE, and only it takes them"
        )
    try:
        gpu = gpu_entries(args.gpu_rims, args.gpu_measurements, args.gpu_architecture)
    except GpuFileError as exc:
        raise RefsUsageError(str(exc)) from None
    return ReferenceValues(
        release=args.release or f"{tee}/{version}",
        tee=tee,
        runtime_version=version,
        images=tuple(args.image),
        measurements=entries,
        min_tcb=tuple(_min_tcb(s) for s in args.min_tcb),
        models=tuple(_model(s) for s in args.model),
        recipe=recipe,
        source=SourceRef(args.source_repo, commit.lower() if commit else None),
        gpu=gpu,
    )


def _publisher_key(path: str) -> SecretKey:
    try:
        return decode_nsec(Path(path).read_text(encoding="ascii").strip())
    except OSError as exc:
        raise RefsUsageError(f"--key {path}: {exc.strerror}") from None
    except (NostrError, UnicodeDecodeError):
        raise RefsUsageError(f"--key {path} does not hold an nsec") from None


async def _publish(event: Event, relays: list[str], timeout_s: float) -> tuple[str, ...]:
    async with RelayPool(relays, ok_timeout_s=timeout_s) as pool:
        result = await pool.publish(event)
    return result.accepted_by


def _check_destination(args: argparse.Namespace) -> None:
    if not args.relay and not args.out:
        raise RefsUsageError("give --relay URL (or --out FILE with --no-publish)")
    if args.no_publish and not args.out:
        raise RefsUsageError("--no-publish needs --out FILE")


def _cmd_publish(args: argparse.Namespace) -> int:
    try:
        _check_destination(args)
        values = build_values(args)
        key = _publisher_key(args.key)
    except (RefsUsageError, CodecError) as exc:
        _err(f"cdvm refs publish: {exc}")
        return EXIT_USAGE
    try:
        unsigned = build_reference_event(
            values, publisher=key.public_key, created_at=int(time.time())
        )
        event = unsigned.sign(key, aux_rand=secrets.token_bytes(32))
    except CodecError as exc:
        _err(f"cdvm refs publish: {exc}")
        return EXIT_USAGE
    finally:
        npub = encode_npub(key.public_key)
        key.wipe()  # best effort: CPython cannot guarantee erasure
    if args.out:
        Path(args.out).write_text(event.to_json() + "\n", encoding="utf-8")
    parsed = parse_reference_event(event)
    sys.stdout.write(render_reference(parsed) + "\n")
    if args.no_publish:
        return EXIT_OK
    try:
        accepted = asyncio.run(_publish(event, list(args.relay), args.timeout))
    except RelayError as exc:
        _err(f"cdvm refs publish: no relay accepted the event: {exc}")
        return EXIT_FAILED
    sys.stdout.write(
        f"published reference values {parsed.address} by {npub} "
        f"(event {event.id}) to {', '.join(accepted)}\n"
    )
    return EXIT_OK


def _inputs_text(inputs: LaunchInputs) -> str:
    parts = [
        f"{name.removesuffix('_sha256')} sha256 {value}"
        for name, value in inputs.to_dict().items()
        if value is not None and name != "guest_features"
    ]
    if inputs.guest_features is not None:
        parts.append(f"guest features {inputs.guest_features:#x}")
    return "; ".join(parts)


def render_reference(ref: PublishedReference) -> str:
    """A human description of one reference-values event (public data only)."""
    v = ref.values
    when = dt.datetime.fromtimestamp(ref.created_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = (
        f"{encode_npub(PublicKey.from_hex(ref.publisher))} release {v.release!r}: tee {v.tee}, "
        f"runtime {v.runtime_version}, published {when} (event {ref.event.id})"
    )
    lines = [head]
    for m in v.measurements:
        where = (
            "" if m.product is None else f" for {m.product.value}, {m.vcpus} vCPU(s) {m.vcpu_type}"
        )
        lines.append(f"  measurement {m.measurement}{where}")
        if _inputs_text(m.inputs):
            lines.append(f"    from {_inputs_text(m.inputs)}")
    lines += [f"  image {image}" for image in v.images]
    for product, floor in v.min_tcb:
        text = " ".join(
            f"{n}={getattr(floor, n)}" for n in _TCB_NAMES if getattr(floor, n) is not None
        )
        lines.append(f"  minimum TCB {product.value}: {text}")
    lines += [f"  model {m.name} sha256 {m.sha256}" for m in v.models]
    lines += render_gpu(v.gpu)
    lines.append(f"  recipe: {v.recipe}")
    lines.append(f"  source: {v.source.repository} @ {v.source.commit or '(no commit)'}")
    return "\n".join(lines)


async def _fetch(
    relays: list[str], authors: tuple[str, ...] | None, timeout_s: float
) -> tuple[list[PublishedReference], list[str]]:
    found: list[PublishedReference] = []
    skipped: list[str] = []
    async with RelayPool(relays) as pool:
        sub = await pool.subscribe([Filter(kinds=(REFERENCE_VALUES_KIND,), authors=authors)])
        try:
            await sub.wait_eose(timeout_s=timeout_s)
        finally:
            await sub.close()
        while (event := sub.get_nowait()) is not None:
            try:
                found.append(parse_reference_event(event))
            except CodecError as exc:
                skipped.append(f"event {event.id} by {event.pubkey[:16]}…: {exc}")
    return found, skipped


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        authors = (
            tuple(parse_publisher(p).hex() for p in args.publisher) if args.publisher else None
        )
    except TrustFileError as exc:
        _err(f"cdvm refs show: --publisher {exc}")
        return EXIT_USAGE
    try:
        found, skipped = asyncio.run(_fetch(list(args.relay), authors, args.timeout))
    except RelayError as exc:
        _err(f"cdvm refs show: {exc}")
        return EXIT_FAILED
    refs = latest_references(found)
    if args.json:
        out: list[dict[str, Any]] = [
            {"publisher": encode_npub(PublicKey.from_hex(r.publisher)), "event": r.event.to_dict()}
            for r in refs
        ]
        sys.stdout.write(json.dumps({"references": out, "skipped": skipped}, indent=2) + "\n")
    else:
        for ref in refs:
            sys.stdout.write(render_reference(ref) + "\n")
        for line in skipped:
            sys.stdout.write(f"skipped (does not parse): {line}\n")
    if not refs:
        _err("cdvm refs show: no reference values found")
        return EXIT_FAILED
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``refs publish`` and ``refs show`` to the ``cdvm`` parser."""
    refs = subparsers.add_parser("refs", help="publish or show reference values (kind 37100)")
    sub = refs.add_subparsers(dest="refs_command", required=True)

    pub = sub.add_parser("publish", help="sign and publish one release's reference values")
    pub.add_argument(
        "--key", required=True, type=resolved, metavar="FILE", help="publisher nsec file"
    )
    pub.add_argument("--relay", action="append", default=[], metavar="URL", help="relay URL")
    pub.add_argument("--tee", choices=[t.value for t in TeeKind], help="TEE kind of the release")
    pub.add_argument("--simulated", action="store_true", help="measure the simulated runtime here")
    pub.add_argument(
        "--root", type=resolved, help="runtime root for --simulated (default: this installation)"
    )
    pub.add_argument(
        "--measurement",
        action="append",
        default=[],
        metavar="HEX:PRODUCT:VCPUS:VCPU_TYPE",
        help="a `cdvm attest measure` output and what it was computed for (repeatable)",
    )
    pub.add_argument("--ovmf", type=resolved, metavar="FILE", help="the OVMF the measurements used")
    pub.add_argument("--kernel", type=resolved, metavar="FILE", help="the guest kernel")
    pub.add_argument("--initrd", type=resolved, metavar="FILE", help="the guest initrd")
    pub.add_argument("--append", metavar="CMDLINE", help="the guest kernel command line")
    pub.add_argument(
        "--guest-features", type=lambda v: int(v, 0), default=None, help="SEV features word"
    )
    pub.add_argument(
        "--image", action="append", default=[], metavar="DIGEST_REF", help="job image (repeatable)"
    )
    pub.add_argument(
        "--min-tcb",
        action="append",
        default=[],
        metavar="PRODUCT:bl=N,tee=N,snp=N,ucode=N",
        help="minimum TCB for a product (repeatable)",
    )
    pub.add_argument(
        "--model", action="append", default=[], metavar="NAME=SHA256", help="model file vouched for"
    )
    add_gpu_arguments(pub)
    pub.add_argument("--release", help="release name, the 'd' tag (default TEE/RUNTIME_VERSION)")
    pub.add_argument("--runtime-version", help="runtime version (default: this installation's)")
    pub.add_argument("--recipe", help="how to recompute the values (default: the cdvm commands)")
    pub.add_argument("--source-repo", required=True, metavar="URL", help="source repository")
    pub.add_argument(
        "--source-commit", metavar="HEX", help="source commit (default: git HEAD of the root)"
    )
    pub.add_argument(
        "--out", type=resolved, metavar="FILE", help="also write the signed event JSON to FILE"
    )
    pub.add_argument("--no-publish", action="store_true", help="only write --out")
    pub.add_argument("--timeout", type=float, default=10.0, metavar="S", help="relay OK wait")
    pub.set_defaults(func=_cmd_publish)

    show = sub.add_parser("show", help="print the reference values on a relay")
    show.add_argument(
        "--relay", action="append", required=True, metavar="URL", help="relay URL (repeatable)"
    )
    show.add_argument(
        "--publisher", action="append", default=[], metavar="NPUB", help="only this publisher's"
    )
    show.add_argument("--json", action="store_true", help="print the events as JSON")
    show.add_argument("--timeout", type=float, default=10.0, metavar="S", help="EOSE wait")
    show.set_defaults(func=_cmd_show)
