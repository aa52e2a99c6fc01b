"""The flood benchmark at a tiny size, so that it cannot rot (issue 10, item 7).

``benchmarks/bench_flood.py`` is run as a person runs it (its own relay, ``cdvm serve``, the
local launcher, the real container, one pinned ONNX chat), at N = 0 and then N = 20 malformed
wraps per second for 2 s with 3 genuine messages per level. The test asserts what the benchmark
exists to show, never a time: the script exits 0, every genuine message of the flooded level was
answered (the benchmark checks each answer echoes the number sent), and the container logged
every wrap the relay accepted as ignored, so the flood did reach it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.relay, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench_flood.py"
HANG_BOUND_S = 180  # bounds a hang only; the run takes about 15 s


def test_flood_benchmark_answers_every_genuine_message(tmp_path: Path) -> None:
    rows_file = tmp_path / "rows.json"
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--rates=0,20",
            "--messages=3",
            "--window-s=2",
            "--answer-s=30",
            f"--json={rows_file}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG_BOUND_S,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = json.loads(rows_file.read_text())
    assert [row["rate"] for row in rows] == [0, 20]
    quiet, flood = rows
    assert quiet["answered"] == quiet["sent"] == 3
    assert flood["answered"] == flood["sent"] == 3
    assert len(flood["latencies_ms"]) == 3
    assert flood["accepted_wraps"] == 40  # ceil(20/s * 2 s), every one accepted by the relay
    assert flood["dropped_wraps"] == 40  # and every one logged by the container as ignored
    assert "3/3" in run.stdout  # the printed table carries the same rows
    assert "40/40" in run.stdout
