"""Benchmark of evidence verification: verified per second, cold and warm chain cache.

Run: ``.venv/bin/python benchmarks/bench_attestation.py`` (under a minute; ``--quick`` for a
smoke run).

Rows:

* real report (tinfoil-genoa-v3, a genuine AMD Genoa VCEK report from tests/vectors/snp):
  ``attestation.snp.verify.verify_report`` (the reference, no cache) and
  ``attestation.verify_snp_item`` with the default policy, cold (a new ``ChainCache`` per
  report: ARK self-signature, ASK and VEK RSA-PSS checks every time) and warm (one cache: the
  three RSA checks once, then per report the ECDSA P-384 report signature, the VEK extensions
  and the policy).
* simulated bundle: ``attestation.verify_evidence`` over a whole bundle (trust gate, chain,
  signature, extensions, policy, binding, HOST_DATA, claims), cold and warm.

Each cell is the median of three timed runs of about a second. No assertion depends on a
timing; this prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cryptography

from attestation import (
    ChainCache,
    Expected,
    Trust,
    build_bundle,
    snp_item_from_certs,
    verify_evidence,
    verify_snp_item,
)
from attestation.simulated import SimulatedTee, load_or_mint, measure_runtime
from attestation.snp.verify import verify_report

REPO = Path(__file__).resolve().parents[1]
SNP = REPO / "tests" / "vectors" / "snp"


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second: the median of three runs of about ``seconds`` each."""
    fn()  # warm-up (imports, lazy decoding)
    rates = []
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            fn()
            count += 1
        rates.append(count / elapsed)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.1 s per cell")
    seconds = 0.1 if parser.parse_args().quick else 1.0

    report = (SNP / "tinfoil-genoa-v3" / "report.bin").read_bytes()
    certs = [
        (SNP / "tinfoil-genoa-v3" / "vcek.der").read_bytes(),
        (SNP / "amd-roots" / "ask_ark_genoa.pem").read_bytes(),
    ]
    real = snp_item_from_certs(report, certs, trust=Trust())
    real_now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        chain = load_or_mint(Path(tmp) / "simulated-tee", now=now - dt.timedelta(minutes=1))
    claims = {
        "pubkey": "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        "job": "aa" * 32,
        "nonce": "bb" * 32,
        "provider": "cc" * 32,
        "model": {"name": "gemma", "sha256": "dd" * 32},
        "runtime": {"version": "0.1.0", "image": "local"},
    }
    tee = SimulatedTee(chain, measure_runtime(REPO))
    item = tee.attest(
        container_pubkey=bytes.fromhex(claims["pubkey"]), claims=claims, initdata=b"i"
    )
    bundle = build_bundle(claims=claims, evidence=[item], initdata=b"i")
    trust = Trust(simulated_roots=(chain.pem("ark"),))
    expected = Expected(job="aa" * 32, nonce="bb" * 32, provider="cc" * 32)
    warm_real, warm_sim = ChainCache(), ChainCache()

    rows = [
        (
            "real report: snp.verify_report (no cache)",
            lambda: verify_report(report, now=real_now, vek=real.vek, chain=(real.ask, real.ark)),
        ),
        (
            "real report: verify_snp_item, cold cache",
            lambda: verify_snp_item(real, now=real_now, trust=Trust(), cache=ChainCache()),
        ),
        (
            "real report: verify_snp_item, warm cache",
            lambda: verify_snp_item(real, now=real_now, trust=Trust(), cache=warm_real),
        ),
        (
            "simulated bundle: verify_evidence, cold cache",
            lambda: verify_evidence(
                bundle, now=now, trust=trust, expected=expected, cache=ChainCache()
            ),
        ),
        (
            "simulated bundle: verify_evidence, warm cache",
            lambda: verify_evidence(
                bundle, now=now, trust=trust, expected=expected, cache=warm_sim
            ),
        ),
    ]
    versions = f"python {platform.python_version()}, cryptography {cryptography.__version__}"
    print(f"{versions}, {platform.machine()}")
    print(f"{'case':<48} {'verified/s':>12} {'ms each':>9}")
    print("-" * 71)
    results = {}
    for name, fn in rows:
        per_s = rate(fn, seconds)
        results[name] = per_s
        print(f"{name:<48} {per_s:>12.0f} {1000 / per_s:>9.2f}")
    print(json.dumps({"cache_hits": {"real": warm_real.hits, "simulated": warm_sim.hits}}))


if __name__ == "__main__":
    main()
