"""The Kubernetes wing: one Confidential Containers pod per job.

Modules: ``pod`` (pure Pod and config building), ``api`` (the few blocking API calls the
node's Role allows), ``launcher`` (the pod's life through those calls; ``api`` and ``launcher``
are the only importers of the ``kubernetes`` client, and this package imports neither at import
time) and ``relay_status`` (learns the container key from its verified kind-7100
event, since the pod's stdout is sealed). See docs/deploy.md.
"""

from __future__ import annotations

__all__: list[str] = []
