"""``python -m container``: run one job from the spec on stdin (docs/launch.md).

The spec is read from stdin (bounded: one byte over :data:`~container.launch.MAX_SPEC_BYTES` is
refused as malformed, exit 20), or from ``CDVM_JOB_SPEC`` under Kubernetes when stdin is empty.
Status lines go to stdout, logs (ids, kinds, sizes) to stderr; the exit code is the job's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from .job import run_job
from .launch import MAX_SPEC_BYTES

__all__ = ["main", "read_spec"]


def read_spec() -> bytes:
    """The raw spec: stdin (closed by the launcher), else ``$CDVM_JOB_SPEC``."""
    raw = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
    if not raw.strip():
        raw = os.environ.get("CDVM_JOB_SPEC", "").encode("utf-8")
    return raw


def main() -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(run_job(read_spec(), status=sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
