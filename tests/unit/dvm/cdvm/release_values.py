"""Reference values for the kind-37100 tests: a sev-snp release, a GPU one and a simulated one."""

from __future__ import annotations

from typing import Any

from attestation.snp.abi import Product
from attestation.snp.validate import TcbFloor
from dvm.cdvm.release import (
    GpuReference,
    LaunchInputs,
    LaunchMeasurement,
    ModelHash,
    ReferenceValues,
    RimRef,
    SourceRef,
)

IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
INPUTS = LaunchInputs(
    ovmf_sha256="01" * 32,
    kernel_sha256="02" * 32,
    initrd_sha256="03" * 32,
    cmdline_sha256="04" * 32,
    guest_features=1,
)
SOURCE = SourceRef("https://github.com/example/confidential-dvm", "5" * 40)
GPU = GpuReference(
    architecture="GH100",
    driver_version="550.90.07",
    vbios_version="96.00.9f.00.01",
    blocks=((1, ("e1" * 48,)), (2, ("e2" * 48, "f2" * 48)), (10, ("ea" * 48,))),
    rims=(RimRef("driver-rim-id", "0d" * 32), RimRef("vbios-rim-id", "0b" * 32)),
)


def snp_values(**overrides: Any) -> ReferenceValues:
    fields: dict[str, Any] = {
        "release": "sev-snp/0.4.0",
        "tee": "sev-snp",
        "runtime_version": "0.4.0",
        "images": (IMAGE,),
        "measurements": (
            LaunchMeasurement("aa" * 48, Product.GENOA, 3, "EPYC-Genoa", INPUTS),
            LaunchMeasurement("bb" * 48, Product.MILAN, 3, "EPYC-Milan", INPUTS),
        ),
        "min_tcb": (
            (Product.GENOA, TcbFloor(bl=7, tee=0, snp=14, ucode=72)),
            (Product.MILAN, TcbFloor(bl=3, tee=0, snp=20, ucode=209)),
        ),
        "models": (ModelHash("gemma3-270m", "cd" * 32),),
        "recipe": "cdvm attest measure --ovmf OVMF.fd --kernel vmlinuz ... (docs/deploy.md §5)",
        "source": SOURCE,
    }
    fields.update(overrides)
    return ReferenceValues(**fields)


def simulated_values(**overrides: Any) -> ReferenceValues:
    fields: dict[str, Any] = {
        "release": "simulated/0.4.0",
        "tee": "simulated",
        "runtime_version": "0.4.0",
        "images": (),
        "measurements": (LaunchMeasurement("cc" * 48),),
        "min_tcb": (),
        "models": (ModelHash("identity", "dd" * 32),),
        "recipe": "cdvm attest measure --simulated --root CHECKOUT",
        "source": SOURCE,
    }
    fields.update(overrides)
    return ReferenceValues(**fields)


def gpu_values(**overrides: Any) -> ReferenceValues:
    fields: dict[str, Any] = {
        "release": "sev-snp+nvidia-h100/0.4.0",
        "tee": "sev-snp+nvidia-h100",
        "gpu": (GPU,),
    }
    fields.update(overrides)
    return snp_values(**fields)
