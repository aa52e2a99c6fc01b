"""The ``cdvm`` command: the parser, and the two subcommands small enough to live here.

``keygen`` (a new Nostr key into a 0600 file) and ``relay`` (the embedded development relay in
the foreground) are here; ``attest``, ``submit``/``chat``, ``refs``, ``trust``, ``serve`` and
``demo`` register themselves from their modules. Exit codes: 0 ok, 1 failure, 2 usage.
``sys.exit`` is called here and nowhere else.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from dvm.cli.attest import register as register_attest
from dvm.cli.demo import register as register_demo
from dvm.cli.jobs import register as register_job_commands
from dvm.cli.paths import resolved
from dvm.cli.refs import register as register_refs
from dvm.cli.serve import register as register_serve
from dvm.cli.trust import register as register_trust
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub, encode_nsec

__all__ = ["main"]


def _cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.exists() and not args.force:
        print(f"cdvm keygen: {path} exists; pass --force to overwrite", file=sys.stderr)
        return 1
    # A fresh clone has no data/: `cdvm keygen --out data/provider.nsec` creates it (0700).
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = SecretKey.generate(secrets.token_bytes)
    try:
        # Mode first: the file is 0600 before any byte of the key lands; never follow a symlink.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(encode_nsec(key) + "\n")
    finally:
        npub = encode_npub(key.public_key)
        key.wipe()
    print(npub)
    return 0


def _cmd_relay(args: argparse.Namespace) -> int:
    from dvm.cli.embedded_relay import run_foreground  # noqa: PLC0415 - optional extra `relay`

    return run_foreground(port=args.port, data_dir=Path(args.data), host=args.host)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdvm", description="confidential-dvm")
    sub = parser.add_subparsers(dest="command", required=True)

    keygen = sub.add_parser("keygen", help="write a new Nostr secret key (nsec) to a 0600 file")
    keygen.add_argument("--out", required=True, type=resolved, help="file to write the nsec to")
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    keygen.set_defaults(func=_cmd_keygen)

    relay = sub.add_parser("relay", help="run the embedded development relay in the foreground")
    relay.add_argument("--port", type=int, default=7447, help="TCP port (default 7447)")
    relay.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    relay.add_argument(
        "--data", default="./data/relay", type=resolved, help="directory for the relay database"
    )
    relay.set_defaults(func=_cmd_relay)

    register_attest(sub)
    register_job_commands(sub)
    register_refs(sub)
    register_trust(sub)
    register_serve(sub)
    register_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    code: int = args.func(args)
    sys.exit(code)


if __name__ == "__main__":
    main()
