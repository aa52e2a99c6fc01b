"""``cdvm trust add|remove|list``: the reference-value publishers this requester trusts.

Spec: DESIGN §3.5 and §5, ``docs/client.md`` ("Pins and reference values"). The trust file is
TOML (default ``~/.config/cdvm/trust.toml``; ``--config PATH``, relative paths resolved against
the working directory), with exactly one key::

    # Reference-value publishers this requester trusts (cdvm trust add/remove; docs/client.md).
    publishers = [
      "npub1...",
    ]

A missing file trusts nobody (it is not an error: fail closed). A file with any other key, a
value that is not a list of npubs, or one that is not UTF-8 TOML is a usage error (exit 2): a typo
must not silently change whom the requester trusts. Writes go to a temporary file renamed into
place, so a crash leaves the old list or the new one. ``cdvm submit`` and ``cdvm chat`` read the
same file (``--trust-config``) through :func:`load_trusted`.

Exit codes: 0 ok; 1 ``remove`` of a key that is not trusted; 2 usage (a bad npub or file).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tomllib
from pathlib import Path

from dvm.nostr.errors import NostrError
from dvm.nostr.keys import PublicKey
from dvm.nostr.nip19 import decode_npub, encode_npub

from .paths import resolved

__all__ = [
    "DEFAULT_TRUST_FILE",
    "TrustFileError",
    "load_trusted",
    "parse_publisher",
    "register",
    "resolve",
    "save_trusted",
]

DEFAULT_TRUST_FILE = Path("~/.config/cdvm/trust.toml")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_HEADER = (
    "# Reference-value publishers this requester trusts (cdvm trust add/remove; docs/client.md).\n"
)


class TrustFileError(Exception):
    """The trust file or a publisher key is unusable (usage error)."""


def resolve(path: str | None) -> Path:
    """``--config`` (relative to the working directory) or the default, ``~`` expanded."""
    chosen = (DEFAULT_TRUST_FILE if path is None else Path(path)).expanduser()
    return chosen if chosen.is_absolute() else Path.cwd() / chosen


def parse_publisher(text: str) -> PublicKey:
    """An ``npub1...`` (or 64-hex) publisher key, else :class:`TrustFileError`."""
    try:
        return decode_npub(text) if text.startswith("npub1") else PublicKey.from_hex(text)
    except (NostrError, ValueError):
        raise TrustFileError(f"{text[:70]!r} is not an npub or a 64-hex public key") from None


def load_trusted(path: Path) -> tuple[PublicKey, ...]:
    """The publishers in the trust file at ``path`` (none if it does not exist)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise TrustFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        body = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TrustFileError(f"{path} is not UTF-8 TOML: {exc}") from None
    if set(body) - {"publishers"}:
        raise TrustFileError(f"{path}: unknown keys {sorted(set(body) - {'publishers'})}")
    listed = body.get("publishers", [])
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise TrustFileError(f"{path}: 'publishers' must be a list of npub strings")
    keys: list[PublicKey] = []
    for item in listed:
        key = parse_publisher(item)
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def save_trusted(path: Path, publishers: tuple[PublicKey, ...]) -> None:
    """Write ``publishers`` to ``path`` (parents created; atomic rename)."""
    lines = "".join(f'  "{encode_npub(p)}",\n' for p in publishers)
    text = f"{_HEADER}publishers = [\n{lines}]\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".trust-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cmd(args: argparse.Namespace) -> int:
    try:
        path = resolve(args.config)
        trusted = load_trusted(path)
        if args.trust_command == "list":
            for key in trusted:
                sys.stdout.write(encode_npub(key) + "\n")
            if not trusted:
                sys.stderr.write(f"cdvm trust: no trusted publishers in {path}\n")
            return EXIT_OK
        key = parse_publisher(args.npub)
    except TrustFileError as exc:
        sys.stderr.write(f"cdvm trust: {exc}\n")
        return EXIT_USAGE
    npub = encode_npub(key)
    if args.trust_command == "add":
        if key in trusted:
            sys.stderr.write(f"cdvm trust: {npub} is already trusted ({path})\n")
            return EXIT_OK
        save_trusted(path, (*trusted, key))
        sys.stdout.write(f"trusted {npub} ({len(trusted) + 1} publisher(s) in {path})\n")
        return EXIT_OK
    if key not in trusted:
        sys.stderr.write(f"cdvm trust: {npub} is not trusted ({path})\n")
        return EXIT_FAILED
    save_trusted(path, tuple(k for k in trusted if k != key))
    sys.stdout.write(f"no longer trusted: {npub} ({len(trusted) - 1} publisher(s) in {path})\n")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``trust add|remove|list`` to the ``cdvm`` parser."""
    trust = subparsers.add_parser(
        "trust", help="the reference-value publishers you trust (add, remove, list)"
    )
    sub = trust.add_subparsers(dest="trust_command", required=True)
    for name, text in (
        ("add", "trust this publisher's reference values (kind 37100)"),
        ("remove", "stop trusting this publisher"),
        ("list", "print the trusted publishers' npubs"),
    ):
        cmd = sub.add_parser(name, help=text)
        if name != "list":
            cmd.add_argument("npub", metavar="NPUB", help="the publisher's npub")
        cmd.add_argument(
            "--config",
            type=resolved,
            metavar="PATH",
            help=f"trust file (default {DEFAULT_TRUST_FILE}; relative to the working directory)",
        )
        cmd.set_defaults(func=_cmd)
