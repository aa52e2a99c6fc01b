"""The local launcher wing: one bubblewrap sandbox per job with the simulated PSP.

Modules: ``launcher`` (:class:`~dvm.node.local.launcher.LocalLauncher`), ``job`` (one running
container process: status lines, kill, reaping), ``sandbox`` (the
bubblewrap argv), ``seccomp`` (its filter), ``relay_forwarder`` (the only way out of a job's
private network namespace), ``psp`` (the simulated AMD PSP on an inherited socket). See
docs/node.md.
"""

from __future__ import annotations

__all__: list[str] = []
