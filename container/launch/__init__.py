"""The launch contract between the node and a job container: one home for both sides.

Spec: docs/launch.md. The node (``dvm.node`` and its launchers) and the container runtime meet
at the job spec on stdin (:mod:`container.launch.spec`, §1), the status lines on stdout and the
exit code (:mod:`container.launch.status`, §2-§3), and, for the local launcher, the simulated
PSP socket (§4, :mod:`dvm.node.local.psp`). Every name and number of that contract is defined
here once; both sides import it from here.
"""

from __future__ import annotations

from .spec import (
    MAX_SPEC_BYTES,
    EvidenceSource,
    JobSpec,
    Limits,
    ModelSpec,
    RunnerKind,
    SpecError,
    build_job_spec,
    parse_job_spec,
)
from .status import (
    MAX_STATUS_LINE_BYTES,
    REASON_EXIT_CODES,
    DestroyReason,
    ExitCode,
    StatusKind,
    StatusLine,
    build_status_line,
    parse_status_line,
)

__all__ = [
    "MAX_SPEC_BYTES",
    "MAX_STATUS_LINE_BYTES",
    "REASON_EXIT_CODES",
    "DestroyReason",
    "EvidenceSource",
    "ExitCode",
    "JobSpec",
    "Limits",
    "ModelSpec",
    "RunnerKind",
    "SpecError",
    "StatusKind",
    "StatusLine",
    "build_job_spec",
    "build_status_line",
    "parse_job_spec",
    "parse_status_line",
]
