"""dvm.cdvm.tee: the GPU flag, Confidential Containers, and the evidence each TEE kind needs."""

from __future__ import annotations

import pytest

from dvm.cdvm.tee import (
    CONFIDENTIAL_CONTAINER_TEES,
    evidence_kind_mismatch,
    is_gpu_job,
    runs_in_confidential_containers,
)
from dvm.nostr.nip90 import TeeKind


@pytest.mark.parametrize(
    ("tee", "gpu", "coco"),
    [
        (TeeKind.SEV_SNP, False, True),
        (TeeKind.SEV_SNP_NVIDIA_H100, True, True),
        (TeeKind.SIMULATED, False, False),
        ("tdx", False, False),  # a kind nobody offers is a string, not an error
    ],
)
def test_flags_of_each_tee_kind(tee: str, gpu: bool, coco: bool) -> None:
    assert is_gpu_job(tee) is gpu
    assert is_gpu_job(str(tee)) is gpu  # the wire string, as parsers keep it
    assert runs_in_confidential_containers(tee) is coco
    assert (str(tee) in CONFIDENTIAL_CONTAINER_TEES) is coco


@pytest.mark.parametrize(
    ("tee", "simulated", "gpus", "reason"),
    [
        ("simulated", True, 0, None),
        ("sev-snp", False, 0, None),
        ("sev-snp+nvidia-h100", False, 1, None),
        ("sev-snp", True, 0, "the evidence is simulated, the request asked for sev-snp"),
        ("simulated", False, 0, "the evidence is sev-snp, the request asked for simulated"),
        ("sev-snp", False, 2, "the evidence is sev-snp + 2 GPU(s), the request asked for sev-snp"),
        (
            "sev-snp+nvidia-h100",
            False,
            0,
            "the evidence is sev-snp, the request asked for sev-snp+nvidia-h100",
        ),
        ("tdx", False, 0, "the request asked for an unknown TEE 'tdx'"),
    ],
)
def test_evidence_kind_mismatch(tee: str, simulated: bool, gpus: int, reason: str | None) -> None:
    assert evidence_kind_mismatch(tee, simulated=simulated, gpus=gpus) == reason
