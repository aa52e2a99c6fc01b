"""``cdvm submit`` and ``cdvm chat``: the requester's commands (``docs/client.md``).

Both publish a job request to ``--provider``, wait for the provider to launch a container, verify
the container's attestation and refuse to send anything if any check fails (every reason is
printed). ``submit`` sends one input and prints the answer (or, with ``--json``, a JSON document
with the answer, job id, container key and verified claims); the input is read from standard
input (or ``--input FILE``) so that it never sits on the command line, where other local users
can read it (``/proc/PID/cmdline``): ``--prompt TEXT`` still works and says so on stderr.
``chat`` reads one message per line from stdin until ``/end`` or end of input.
``--keep-result-readable`` asks for the stored result to be encrypted to U rather than to the
per-job session key, which is wiped after the job (docs/protocol.md §6).
``submit --chat-in-client --key FILE`` verifies only and prints the container's npub and DM
relays, for a chat from a standard NIP-17 client with the user's own key
(:mod:`dvm.cli.chat_in_client`, docs/standard-clients.md).

Progress goes to stderr step by step (request published, container launched, evidence verified
with what was checked, input sent, answer, container destroyed); ``--json`` keeps stderr quiet
except for errors. Exit codes: 0 ok; 1 refused (attestation failed) or the job failed; 2 usage;
3 timeout (including a destruction that was not confirmed in time). This module only returns
codes: ``sys.exit`` stays in :func:`dvm.cli.main`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from attestation.evidence import SIMULATED_LABEL
from attestation.snp.validate import DEFAULT_POLICY
from dvm.client import (
    AttestationRefused,
    Chat,
    ClientError,
    ClientTimeout,
    JobFailed,
    JobOptions,
    JobOutcome,
    OptionsError,
    Step,
    Timeouts,
    load_policy_file,
    outcome_to_json,
    submit,
    trust_simulated_roots,
)
from dvm.client.options import load_crl_policy
from dvm.client.verify import default_crl_fetcher
from dvm.nostr.errors import NostrError
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip19 import decode_npub, decode_nsec
from dvm.nostr.nip59 import GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL
from dvm.nostr.nip90 import FeedbackStatus, TeeKind
from dvm.relay import RelayError

from .chat_in_client import run_chat_in_client
from .paths import resolved, resolved_or_stdin
from .pinning import add_pin_arguments, pins_from_args, with_references
from .waiting import WaitingLines

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "register"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
_STEPS = list(Step)


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _progress(step: Step, detail: str) -> None:
    _err(f"[{_STEPS.index(step) + 1}/{len(_STEPS)}] {step.value}: {detail}")


def _quiet(step: Step, detail: str) -> None:
    del step, detail


def _provider(text: str) -> PublicKey:
    try:
        return decode_npub(text) if text.startswith("npub1") else PublicKey.from_hex(text)
    except NostrError:
        raise OptionsError(f"--provider {text[:70]!r} is not an npub or a 64-hex key") from None


def _params(items: list[str]) -> tuple[tuple[str, str], ...]:
    params = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise OptionsError(f"--param {item[:40]!r} is not NAME=VALUE")
        params.append((name, value))
    return tuple(params)


def _identity(path: str | None) -> SecretKey | None:
    if path is None:
        return None
    try:
        return decode_nsec(Path(path).read_text(encoding="ascii").strip())
    except OSError as exc:
        raise OptionsError(f"--key {path}: {exc.strerror}") from None
    except (NostrError, UnicodeDecodeError):
        raise OptionsError(f"--key {path} does not hold an nsec") from None


def _options(args: argparse.Namespace) -> JobOptions:
    if args.timeout <= 0:
        raise OptionsError("--timeout must be positive")
    trust = trust_simulated_roots([Path(p) for p in args.trust_simulated])
    return JobOptions(
        provider=_provider(args.provider),
        relays=tuple(args.relay),
        model=args.model,
        kind=args.kind,
        params=_params(args.param),
        tee=args.tee,
        policy=load_policy_file(Path(args.policy)) if args.policy else DEFAULT_POLICY,
        trust=trust,
        trusted_images=tuple(args.trust_image),
        pins=pins_from_args(args),
        crl=load_crl_policy(
            [Path(p) for p in args.crl],
            accept_unavailable=args.crl_accept_unavailable,
            fetch=default_crl_fetcher(),
        ),
        timeouts=Timeouts.uniform(args.timeout),
        wrap_kind=args.wrap_kind,
        result_to_requester=args.keep_result_readable,
        progress=_quiet if args.json else _progress,
    )


def _outcome_code(outcome: JobOutcome) -> int:
    if outcome.status is FeedbackStatus.ERROR:
        _err(f"cdvm: the provider reported an error after the answer ({outcome.reason})")
        return EXIT_FAILED
    if not outcome.destroyed:
        _err("cdvm: the provider did not confirm the container's destruction in time")
        return EXIT_TIMEOUT
    return EXIT_OK


def _report(outcome: JobOutcome, *, as_json: bool) -> None:
    if as_json:
        _out(outcome_to_json(outcome))
    if outcome.verification.simulated and not as_json:
        _err(f"cdvm: {SIMULATED_LABEL}")


def _run(args: argparse.Namespace, body: str) -> int:
    try:
        options = _options(args)
        if args.crl_accept_unavailable and not args.crl:
            _err(
                f"cdvm {body}: WARNING: --crl-accept-unavailable: if AMD's CRL cannot be fetched, "
                "the job goes on without a revocation check (a revoked host key would go unnoticed)"
            )
        options = asyncio.run(with_references(options, command=body, quiet=args.json))
        identity = _identity(args.key)
        if body == "submit" and args.chat_in_client:
            _out(asyncio.run(run_chat_in_client(options, identity, as_json=args.json)))
            return EXIT_OK
        # What the job waits for, every few seconds on stderr (not in --json mode; waiting.py).
        waiting = WaitingLines(options.progress, chat=body == "chat", write=_err)
        if not args.json:
            options = dataclasses.replace(options, progress=waiting.progress)
        if body == "submit":
            return asyncio.run(waiting.around(_submit(args, options, identity), quiet=args.json))
        return asyncio.run(waiting.around(_chat(args, options, identity), quiet=args.json))
    except OptionsError as exc:
        _err(f"cdvm {body}: {exc}")
        return EXIT_USAGE
    except AttestationRefused as exc:
        _err(f"cdvm {body}: REFUSED: {exc}")
        return EXIT_FAILED
    except ClientTimeout as exc:
        _err(f"cdvm {body}: timeout: {exc}")
        return EXIT_TIMEOUT
    except JobFailed as exc:
        _err(f"cdvm {body}: failed: {exc}")
        return EXIT_FAILED
    except (ClientError, RelayError, NostrError) as exc:
        _err(f"cdvm {body}: {exc}")
        return EXIT_FAILED


_PROMPT_WARNING = (
    "cdvm submit: warning: --prompt puts the input on the command line, where other local "
    "users can read it (ps, /proc/PID/cmdline); pipe it on standard input or use --input FILE"
)
_NO_INPUT = (
    "no input: pipe it on standard input (echo TEXT | cdvm submit ...), "
    "or give --input FILE (--input - reads the terminal until Ctrl-D)"
)


def _read_input(args: argparse.Namespace) -> str:
    """The input, verbatim: ``--prompt``, ``--input FILE``, else standard input.

    Standard input is read when ``--input -`` says so, or when neither option is given and it
    is not a terminal; a terminal with nothing given is a usage error (nobody is typing).
    Messages never quote the input (a decoding error names no byte of it).
    """
    if args.prompt is not None:
        _err(_PROMPT_WARNING)
        text: str = args.prompt
    elif args.input is not None and args.input != "-":
        try:
            text = Path(args.input).read_bytes().decode("utf-8")
        except OSError as exc:
            raise OptionsError(f"--input {args.input}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise OptionsError(f"--input {args.input} is not UTF-8 text") from None
    else:
        stdin = sys.stdin
        if stdin is None or (args.input is None and stdin.isatty()):
            raise OptionsError(_NO_INPUT)
        try:
            text = stdin.buffer.read().decode("utf-8")
        except OSError as exc:
            raise OptionsError(f"standard input: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise OptionsError("standard input is not UTF-8 text") from None
    if not text:
        raise OptionsError("the input is empty")
    return text


async def _submit(args: argparse.Namespace, options: JobOptions, identity: SecretKey | None) -> int:
    text = _read_input(args)
    outcome = await submit(options, text, identity=identity)
    if not args.json:
        _out(outcome.answer)
    _report(outcome, as_json=args.json)
    return _outcome_code(outcome)


async def _chat(args: argparse.Namespace, options: JobOptions, identity: SecretKey | None) -> int:
    interactive = sys.stdin.isatty() and not args.json
    async with Chat(options, identity=identity) as chat:
        if not args.json:
            _err("chat open: one message per line; /end (or end of input) ends the job")
        while True:
            if interactive:
                sys.stderr.write("> ")
                sys.stderr.flush()
            line = await asyncio.to_thread(sys.stdin.readline)
            text = line.rstrip("\n")
            if not line or text.strip() == "/end":
                break
            if not text.strip():
                continue
            answer = await chat.send(text)
            if not args.json:
                _out(answer)
        outcome = await chat.end()
    _report(outcome, as_json=args.json)
    return _outcome_code(outcome)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", required=True, help="the provider's npub (or 64-hex key)")
    parser.add_argument(
        "--relay", action="append", required=True, metavar="URL", help="relay URL (repeatable)"
    )
    parser.add_argument("--model", required=True, help="model name the provider announces")
    parser.add_argument("--kind", type=int, default=5050, help="job request kind (default 5050)")
    parser.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="job parameter (repeatable)"
    )
    parser.add_argument(
        "--tee",
        choices=[t.value for t in TeeKind],
        default=TeeKind.SEV_SNP.value,
        help="required TEE (default sev-snp; simulated only when asked)",
    )
    parser.add_argument(
        "--policy", type=resolved, metavar="FILE", help="SEV-SNP policy (TOML, [snp] table)"
    )
    parser.add_argument(
        "--trust-simulated",
        action="append",
        default=[],
        type=resolved,
        metavar="ROOT.pem",
        help="trust this simulated ARK (SIMULATED: not confidential)",
    )
    parser.add_argument(
        "--trust-image",
        action="append",
        default=[],
        metavar="DIGEST_REF",
        help=(
            "sev-snp jobs: pin this job image, registry/name@sha256:<64 hex> "
            "(repeatable; tags refused; or a trusted publisher's reference values)"
        ),
    )
    parser.add_argument(
        "--crl",
        action="append",
        default=[],
        type=resolved,
        metavar="FILE",
        help=(
            "sev-snp jobs: check revocation against this AMD CRL (DER/PEM, repeatable; nothing "
            "is fetched then). Default: AMD's CRL is fetched from KDS (cached) and required"
        ),
    )
    parser.add_argument(
        "--crl-accept-unavailable",
        action="store_true",
        help=(
            "sev-snp jobs: if AMD's CRL cannot be had, go on WITHOUT a revocation check "
            "(reported as 'revocation not checked')"
        ),
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="seconds per step (default 300)"
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, no progress")
    parser.add_argument(
        "--key",
        type=resolved,
        metavar="FILE",
        help="requester nsec file (default: a fresh throwaway key)",
    )
    parser.add_argument(
        "--keep-result-readable",
        action="store_true",
        help=(
            "encrypt the stored result to your key (--key) rather than to the per-job session "
            "key, which is wiped: a later leak of your key then reveals it (docs/protocol.md §6)"
        ),
    )
    parser.add_argument(
        "--wrap-kind",
        type=int,
        choices=[WRAP_KIND_EPHEMERAL, GIFT_WRAP_KIND],
        default=WRAP_KIND_EPHEMERAL,
        help="gift wrap kind for the channel (default 21059, 1059 for NIP-17 storage)",
    )

    add_pin_arguments(parser)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``submit`` and ``chat`` to the ``cdvm`` parser."""
    sub = subparsers.add_parser(
        "submit", help="run one confidential job: verify the container, send, print the answer"
    )
    _common(sub)
    source = sub.add_mutually_exclusive_group()
    source.add_argument(
        "--input",
        type=resolved_or_stdin,
        metavar="FILE",
        help="read the input from FILE ('-': standard input, the default when it is not a tty)",
    )
    source.add_argument(
        "--prompt",
        metavar="TEXT",
        help="the input text (visible to other local users in the process list: prefer stdin)",
    )
    source.add_argument(
        "--chat-in-client",
        action="store_true",
        help=(
            "verify only, then print the container's npub and DM relays: chat from any NIP-17 "
            "client with your own key (needs --key; docs/standard-clients.md)"
        ),
    )
    sub.set_defaults(func=lambda args: _run(args, "submit"))

    chat = subparsers.add_parser(
        "chat", help="verify a fresh container, then chat line by line (/end ends)"
    )
    _common(chat)
    chat.set_defaults(func=lambda args: _run(args, "chat"))
