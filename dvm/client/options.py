"""What a requester asks for: the job options, the timeouts and the progress steps.

Spec: DESIGN §3.2 (request), §3.5 (verification inputs: policy and trusted roots).

:class:`JobOptions` is a frozen value. :meth:`JobOptions.request_params` turns it into the
request's ``param`` tags (``model`` first, then ``mode``, then the caller's own); the caller's
params may not repeat ``model`` or ``mode`` (the request parser refuses duplicate names, so the
node and the container could never read different values -- we refuse earlier, as a usage
error). ``trust`` starts with the pinned AMD roots only: simulated evidence is refused unless a
simulated root is added on purpose with :func:`trust_simulated_roots`. ``trusted_images`` pins the
job image of ``sev-snp`` jobs: digest references ``registry/name@sha256:<64 hex>`` only
(:func:`attestation.initdata.check_image_reference`; a tag is a pointer its owner can move, so it
is a usage error). ``pins`` (:class:`~dvm.client.pins.Pins`) are the requester's pins of the
measurement, image and model sha256 (explicit, or trusted publishers' reference values): the
default pins nothing, so every job is refused until the requester chooses (fail closed).
``crl`` is the revocation policy; None (the default) means the client's default for the TEE kind
(:func:`dvm.client.verify.default_crl_policy`: a current AMD CRL is required for hardware kinds,
fetched through the KDS cache); :func:`load_crl_policy` builds the CLI's choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from attestation.errors import AttestationError
from attestation.snp.crl import CrlMode, CrlPolicy, parse_crls
from attestation.snp.kds import Fetcher
from attestation.snp.validate import DEFAULT_POLICY, Policy, load_policy
from attestation.verification import Trust
from dvm.cdvm.pod_contract import check_image_reference
from dvm.nostr.keys import PublicKey
from dvm.nostr.nip59 import GIFT_WRAP_KINDS, WRAP_KIND_EPHEMERAL
from dvm.nostr.nip90 import JOB_REQUEST_KINDS, TeeKind

from .errors import OptionsError
from .pins import Pins

__all__ = [
    "RESERVED_PARAMS",
    "JobMode",
    "JobOptions",
    "ProgressListener",
    "Step",
    "Timeouts",
    "load_crl_policy",
    "load_policy_file",
    "trust_simulated_roots",
]

RESERVED_PARAMS = frozenset({"model", "mode"})


class JobMode(StrEnum):
    """The ``["param", "mode", ...]`` value: one answer then destroy, or a chat until ``/end``."""

    ONESHOT = "oneshot"
    CHAT = "chat"


class Step(StrEnum):
    """The steps a job goes through, reported to a :class:`ProgressListener` in this order."""

    PUBLISHED = "request published"
    LAUNCHED = "container launched"
    VERIFIED = "evidence verified"
    INPUT_SENT = "input sent"
    ANSWER = "answer"
    DESTROYED = "container destroyed"


class ProgressListener(Protocol):
    """Called once per completed step with a one-line, secret-free description."""

    def __call__(self, step: Step, detail: str) -> None: ...


def _no_progress(step: Step, detail: str) -> None:
    del step, detail


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each wait may take, in seconds."""

    attestation_s: float = 120.0  # request published -> attestation verified
    answer_s: float = 300.0  # input sent -> final answer
    destroyed_s: float = 60.0  # last answer / end -> success + destroyed feedback

    def __post_init__(self) -> None:
        for name in ("attestation_s", "answer_s", "destroyed_s"):
            if not getattr(self, name) > 0:
                raise OptionsError(f"timeout {name} must be positive")

    @classmethod
    def uniform(cls, timeout_s: float) -> Timeouts:
        """The same limit for every step (the CLI's ``--timeout``)."""
        return cls(attestation_s=timeout_s, answer_s=timeout_s, destroyed_s=timeout_s)


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Everything a job request needs besides the requester's keys and the input."""

    provider: PublicKey
    relays: tuple[str, ...]
    model: str
    kind: int = 5050
    params: tuple[tuple[str, str], ...] = ()
    tee: str = TeeKind.SEV_SNP.value
    policy: Policy = DEFAULT_POLICY
    trust: Trust = field(default_factory=Trust)
    timeouts: Timeouts = field(default_factory=Timeouts)
    wrap_kind: int = WRAP_KIND_EPHEMERAL
    expiration_s: int = 3600  # the request's NIP-40 expiration, from now
    fresh_session: bool = True  # a new session key S per job (DESIGN §3.2)
    #: ["result-to", U]: the stored result stays readable by U (default: by S only, which is
    #: wiped after the job, so a later leak of U reveals no past result; docs/protocol.md §6)
    result_to_requester: bool = False
    #: job images (digest references) a sev-snp container may run (added to ``pins.images``)
    trusted_images: tuple[str, ...] = ()
    #: what the requester pinned (dvm.client.pins); the default pins nothing and refuses every job
    pins: Pins = field(default_factory=Pins)
    #: revocation (AMD CRL); None: the default for the TEE kind (hardware: required, fetched)
    crl: CrlPolicy | None = None
    progress: ProgressListener = _no_progress

    def __post_init__(self) -> None:
        if not self.relays:
            raise OptionsError("at least one relay is needed")
        for url in self.relays:
            if not url.startswith(("ws://", "wss://")):
                raise OptionsError(f"relay {url[:64]!r} is not a ws:// or wss:// URL")
        if not self.model:
            raise OptionsError("a model name is needed")
        if self.kind not in JOB_REQUEST_KINDS:
            raise OptionsError(f"job kind {self.kind} is outside 5000-5999")
        if self.tee not in {t.value for t in TeeKind}:
            raise OptionsError(
                f"unknown TEE kind {self.tee!r} (one of {[t.value for t in TeeKind]})"
            )
        if self.wrap_kind not in GIFT_WRAP_KINDS:
            raise OptionsError(f"gift wrap kind must be 1059 or 21059, not {self.wrap_kind}")
        if self.expiration_s <= 0:
            raise OptionsError("expiration_s must be positive")
        names = [name for name, _ in self.params]
        for name in names:
            if not name:
                raise OptionsError("a parameter needs a name")
            if name in RESERVED_PARAMS:
                raise OptionsError(f"parameter {name!r} is set by its own option")
        if len(set(names)) != len(names):
            raise OptionsError("a parameter is given twice")
        for image in self.trusted_images:
            try:
                check_image_reference(image)
            except AttestationError:
                raise OptionsError(
                    f"trusted image (--trust-image) {image[:120]!r} is not a digest reference "
                    "registry.example/name@sha256:<64 hex> (tags are refused: a tag can be moved)"
                ) from None

    def request_params(self, mode: JobMode) -> tuple[tuple[str, str], ...]:
        return (("model", self.model), ("mode", mode.value), *self.params)


def trust_simulated_roots(paths: Sequence[Path], base: Trust | None = None) -> Trust:
    """``base`` (default: the pinned AMD roots only) plus the simulated ARKs in ``paths``."""
    roots: list[bytes] = []
    for path in paths:
        try:
            roots.append(path.read_bytes())
        except OSError as exc:
            raise OptionsError(f"cannot read simulated root {path}: {exc.strerror}") from None
    start = base or Trust()
    try:
        return Trust(
            amd_arks=start.amd_arks,
            simulated_roots=(*start.simulated_roots, *roots),
            nvidia_roots=start.nvidia_roots,
        )
    except AttestationError as exc:
        raise OptionsError(f"a simulated root is not a certificate: {exc}") from None


def load_policy_file(path: Path) -> Policy:
    """A TOML policy (``[snp]`` table, :func:`attestation.snp.validate.load_policy`)."""
    try:
        return load_policy(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OptionsError(f"cannot read policy {path}: {exc.strerror}") from None
    except (AttestationError, UnicodeDecodeError) as exc:
        raise OptionsError(f"policy {path}: {exc}") from None


def load_crl_policy(
    paths: Sequence[Path], *, accept_unavailable: bool, fetch: Fetcher | None = None
) -> CrlPolicy | None:
    """The CLI's revocation choice: ``--crl FILE`` (repeatable) and ``--crl-accept-unavailable``.

    Files given: ``require`` exactly those CRLs (DER or PEM), nothing is fetched. Only
    ``accept_unavailable``: fetch through ``fetch`` (the caller passes the KDS cache), and a
    CRL that cannot be had is reported, not fatal. Neither: None, the client's default.
    """
    if not paths and not accept_unavailable:
        return None
    crls: list[bytes] = []
    for path in paths:
        try:
            crls.append(path.read_bytes())
            parse_crls(crls[-1])
        except OSError as exc:
            raise OptionsError(f"cannot read CRL {path}: {exc.strerror}") from None
        except AttestationError as exc:
            raise OptionsError(f"CRL {path}: {exc}") from None
    mode = CrlMode.ACCEPT_UNAVAILABLE if accept_unavailable else CrlMode.REQUIRE
    return CrlPolicy(mode, None if crls else fetch, tuple(crls))
