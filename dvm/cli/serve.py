"""``cdvm serve --config provider.toml``: run the provider node in the foreground.

docs/node.md documents the config and the lifecycle; docs/deploy.md the Kubernetes launcher.
The command logs to stderr (ids, kinds, states and sizes; never job data or keys), handles
SIGTERM and SIGINT as a clean shutdown (stop intake, let running jobs finish within
``limits.grace_s``, kill the rest, delete the announcement), and returns 0 after a clean
shutdown, 1 when the config or the start fails (with the reason on stderr). ``sys.exit`` stays
in ``dvm.cli``.

Launchers (``launcher.kind``):

* ``local``: :meth:`LocalLauncher.prepare` (probe bubblewrap, stage and measure the runtime,
  load the simulated TEE); the node opens its own relay pool.
* ``kubernetes``: an API client from ``launcher.kubernetes.kubeconfig`` or the in-cluster
  service account (:func:`api_client_for`); :meth:`KubernetesLauncher.check` first (a missing
  RuntimeClass refuses the start, naming the class); then the relay pool, opened here and
  shared with the node, on which a :class:`RelayStatusSource` turns each job's verified
  kind-7100 event into its ``attested`` line (trusting the pinned AMD roots only). The claims'
  ``runtime.image`` is the configured image digest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvm.node.config import LauncherKind, NodeConfig, load_config, load_secret_key
from dvm.node.errors import ConfigError, NodeError
from dvm.node.kubernetes.relay_status import RelayStatusSource
from dvm.node.launcher import Launcher
from dvm.node.ledger import JobLedger
from dvm.node.local.launcher import LocalLauncher
from dvm.node.node import ProviderNode
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import encode_npub
from dvm.relay import RelayPool

from .paths import resolved

__all__ = ["StartedLauncher", "register", "run_serve", "started_launcher"]

_log = logging.getLogger("dvm.serve")


@dataclass(frozen=True, slots=True)
class StartedLauncher:
    """A launcher ready to serve, what the claims say about the runtime, and the pool (if the
    launcher needed one before the node: the node then publishes on it too)."""

    launcher: Launcher
    runtime_version: str
    runtime_image: str
    pool: RelayPool | None = None


def _package_version() -> str:
    try:
        return importlib.metadata.version("confidential-dvm")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@contextlib.asynccontextmanager
async def started_launcher(config: NodeConfig, key: SecretKey) -> AsyncIterator[StartedLauncher]:
    """The configured launcher, checked and ready; closed (and its pool) on exit."""
    if config.launcher.kind is LauncherKind.LOCAL:
        local = await asyncio.to_thread(LocalLauncher.prepare, config, now=dt.datetime.now(dt.UTC))
        try:
            yield StartedLauncher(local, local.runtime_version, local.runtime_image)
        finally:
            await local.close()
        return
    kube = config.launcher.kubernetes
    if kube is None:  # pragma: no cover - parse_config guarantees the table
        raise ConfigError("config table launcher.kubernetes is missing")
    try:
        # The `kubernetes` client is the optional `k8s` extra: only this launcher needs it, so
        # `cdvm relay`, `cdvm submit` and a local node work without it.
        from dvm.node.kubernetes.launcher import (  # noqa: PLC0415
            KubernetesLauncher,
            api_client_for,
        )
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"launcher.kind = 'kubernetes' needs the k8s extra ({exc.name} is not installed): "
            "pip install 'confidential-dvm[k8s]'"
        ) from None
    # The pool is made (not opened) first so the status source can hold it; the RuntimeClass
    # check runs before any relay is contacted, so a cluster without CoCo fails fast.
    pool = RelayPool(config.relays, secret_key=key)
    launcher = KubernetesLauncher(
        kube,
        api_client=api_client_for(kube),
        status_source=RelayStatusSource(pool, image=kube.image),
    )
    try:
        await launcher.check()
        _log.info(
            "kubernetes launcher: namespace %s, runtime class %s%s, image %s",
            kube.namespace,
            kube.runtime_class,
            f" (GPU: {kube.gpu_runtime_class})" if kube.gpu_runtime_class else "",
            kube.image,
        )
        async with pool:
            yield StartedLauncher(launcher, _package_version(), kube.image, pool)
    finally:
        await launcher.close()


async def run_serve(
    config: NodeConfig, key: SecretKey, *, stop: asyncio.Event | None = None
) -> None:
    """Run the node until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    stop_event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if stop is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_event.set)
    try:
        async with started_launcher(config, key) as started:
            with JobLedger.in_data_dir(config.data_dir) as ledger:
                node = ProviderNode(
                    config,
                    secret_key=key,
                    launcher=started.launcher,
                    ledger=ledger,
                    runtime_version=started.runtime_version,
                    runtime_image=started.runtime_image,
                    pool=started.pool,
                )
                _log.info("provider %s starting", encode_npub(key.public_key))
                await node.run(stop_event)
    finally:
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
    serve.add_argument(
        "--config", required=True, type=resolved, help="provider config (TOML, docs/node.md)"
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level on stderr (default info; debug adds the containers' stderr)",
    )
    serve.set_defaults(func=_cmd_serve)
