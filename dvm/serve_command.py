"""``cdvm serve --config provider.toml``: run the provider node in the foreground.

docs/node.md documents the config and the lifecycle. The command logs to stderr (ids, kinds,
states and sizes; never job data or keys), handles SIGTERM and SIGINT as a clean shutdown
(stop intake, let running jobs finish within ``limits.grace_s``, kill the rest, delete the
announcement), and returns 0 after a clean shutdown, 1 when the config or the start fails
(with the reason on stderr). ``sys.exit`` stays in ``dvm.cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import signal
from pathlib import Path
from typing import Any

from dvm.node.config import LauncherKind, NodeConfig, load_config, load_secret_key
from dvm.node.errors import NodeError
from dvm.node.ledger import JobLedger
from dvm.node.local_launcher import LocalLauncher
from dvm.node.node import ProviderNode
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub

__all__ = ["register", "run_serve"]

_log = logging.getLogger("dvm.serve")


async def run_serve(
    config: NodeConfig, key: SecretKey, *, stop: asyncio.Event | None = None
) -> None:
    """Run the node until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    if config.launcher.kind is not LauncherKind.LOCAL:
        raise NodeError(f"the {config.launcher.kind.value} launcher is not available yet")
    launcher = await asyncio.to_thread(LocalLauncher.prepare, config, now=dt.datetime.now(dt.UTC))
    stop_event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if stop is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_event.set)
    try:
        with JobLedger.in_data_dir(config.data_dir) as ledger:
            node = ProviderNode(
                config,
                secret_key=key,
                launcher=launcher,
                ledger=ledger,
                runtime_version=launcher.runtime_version,
                runtime_image=launcher.runtime_image,
            )
            _log.info("provider %s starting", encode_npub(key.public_key))
            await node.run(stop_event)
    finally:
        await launcher.close()
        if stop is None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def _cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(Path(args.config))
        key = load_secret_key(config)
    except NodeError as exc:
        _log.error("cdvm serve: %s", exc)
        return 1
    try:
        asyncio.run(run_serve(config, key))
    except NodeError as exc:
        _log.error("cdvm serve: %s", exc)
        return 1
    finally:
        key.wipe()
    return 0


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``cdvm`` subcommands (``subparsers`` of argparse)."""
    serve = subparsers.add_parser("serve", help="run the provider node (cdvm serve --config FILE)")
    serve.add_argument("--config", required=True, help="provider config (TOML, docs/node.md)")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level on stderr (default info; debug adds the containers' stderr)",
    )
    serve.set_defaults(func=_cmd_serve)
