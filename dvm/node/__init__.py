"""``dvm.node``: the provider daemon behind ``cdvm serve`` (DESIGN §3.1-§3.3, §3.9, §4).

Modules: ``config`` (TOML -> frozen values), ``params`` (job parameters), ``admission``
(allow-list, proof of work, rate limit, capacity), ``intake`` (request screening -> accepted or
refused with a cdvm/1 reason), ``ledger`` (SQLite, at most one launch per request id),
``launcher`` (the :class:`Launcher` seam and the exit -> feedback mapping), ``local_launcher``
+ ``sandbox`` + ``psp`` (a bubblewrap sandbox per job with the simulated PSP), ``announce``
(NIP-89 / NIP-65 / NIP-09 events), ``node`` (:class:`ProviderNode`, the lifecycle);
for Confidential Containers: ``k8s_pod`` (pure Pod and config building),
``kubernetes_launcher`` (a Pod per job through the Kubernetes API) and ``relay_status`` (learns
the container key from its verified kind-7100 event, since the pod's stdout is sealed).
Sits above ``dvm.relay`` and ``dvm.nostr``; independent of ``dvm.client`` (import-linter).
See ``docs/node.md``.
"""

from __future__ import annotations

from container.launch import StatusLine

from .config import NodeConfig, load_config, load_secret_key, parse_config
from .errors import ConfigError, LaunchError, LedgerError, NodeError, SandboxUnavailable
from .launcher import ExitInfo, LaunchedJob, Launcher, LaunchRequest
from .ledger import JobLedger, JobState
from .local.launcher import LocalLauncher
from .node import ProviderNode

__all__ = [
    "ConfigError",
    "ExitInfo",
    "JobLedger",
    "JobState",
    "LaunchError",
    "LaunchRequest",
    "LaunchedJob",
    "Launcher",
    "LedgerError",
    "LocalLauncher",
    "NodeConfig",
    "NodeError",
    "ProviderNode",
    "SandboxUnavailable",
    "StatusLine",
    "load_config",
    "load_secret_key",
    "parse_config",
]
