"""cdvm/1 TEE kinds: which run under Confidential Containers, which carry a GPU (DESIGN §3.2, §3.4).

A job request names its TEE in ``["tee", kind]`` (:class:`dvm.nostr.nip90.TeeKind`; parsers keep
the tag as a string, because a request may name a kind nobody offers). Three decisions follow
from that string, and each is made here only:

* :func:`is_gpu_job`: the job runs with an NVIDIA GPU in confidential-computing mode. The
  Kubernetes launcher asks for the GPU runtime class and resource, the job's initdata admits
  ``/dev/nvidia*`` devices (``dvm.cdvm.pod_contract``), and verifiers expect GPU evidence.
* :func:`runs_in_confidential_containers`: the job runs in a Confidential Containers pod, so
  its report's HOST_DATA must be the digest of this job's initdata.
* :func:`evidence_kind_mismatch`: the evidence is of the kind the request asked for
  (``simulated`` is never accepted for ``sev-snp``, and ``sev-snp+nvidia-h100`` needs GPU
  evidence).

Pure.
"""

from __future__ import annotations

from dvm.nostr.nip90 import TeeKind

__all__ = [
    "CONFIDENTIAL_CONTAINER_TEES",
    "evidence_kind_mismatch",
    "is_gpu_job",
    "runs_in_confidential_containers",
]

#: TEE kinds that run under Confidential Containers, where HOST_DATA = digest of the initdata.
CONFIDENTIAL_CONTAINER_TEES = frozenset({TeeKind.SEV_SNP.value, TeeKind.SEV_SNP_NVIDIA_H100.value})

# What the evidence of each kind must be: (CPU report simulated, GPU reports present).
_EVIDENCE_OF = {
    TeeKind.SIMULATED.value: (True, False),
    TeeKind.SEV_SNP.value: (False, False),
    TeeKind.SEV_SNP_NVIDIA_H100.value: (False, True),
}


def is_gpu_job(tee: str) -> bool:
    """Whether a job of TEE kind ``tee`` runs with a confidential NVIDIA GPU."""
    return tee == TeeKind.SEV_SNP_NVIDIA_H100.value


def runs_in_confidential_containers(tee: str) -> bool:
    """Whether a job of TEE kind ``tee`` runs in a Confidential Containers pod (with initdata)."""
    return tee in CONFIDENTIAL_CONTAINER_TEES


def evidence_kind_mismatch(tee: str, *, simulated: bool, gpus: int) -> str | None:
    """Why evidence with a ``simulated`` (or not) CPU report and ``gpus`` GPU reports is not
    evidence of a ``tee`` job, or None when it is."""
    wanted = _EVIDENCE_OF.get(tee)
    if wanted is None:
        return f"the request asked for an unknown TEE {tee!r}"
    if (simulated, gpus > 0) != wanted:
        seen = ("simulated" if simulated else "sev-snp") + (f" + {gpus} GPU(s)" if gpus else "")
        return f"the evidence is {seen}, the request asked for {tee}"
    return None
