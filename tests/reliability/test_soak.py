"""The soak in its 30-second version (60 seconds with ``--thorough``;
``python -m bench soak`` runs ten minutes): mixed traffic on PostgreSQL with two server workers and a worker
process, then no 5xx, totals equal to the records, every acknowledged impact
once, every event delivered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability import THOROUGH

ROOT = Path(__file__).resolve().parents[2]
SECONDS = "60" if THOROUGH else "30"


@pytest.mark.slow
def test_half_a_minute_of_mixed_traffic(postgres_server: str, tmp_path: Path) -> None:
    env = {**os.environ, "OPENIMPACT_BENCH_POSTGRES": postgres_server, "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    run = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--seconds", SECONDS, "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = (tmp_path / "latest.md").read_text() if (tmp_path / "latest.md").exists() else ""
    assert run.returncode == 0, report + run.stdout[-2000:] + run.stderr[-3000:]
    assert "**no**" not in report
    for check in (
        "no 5xx",
        "every acknowledged impact is stored, once, with its amount",
        "totals equal the records",
        "the receiver got every event of the feed, and nothing else",
    ):
        (line,) = [row for row in report.splitlines() if row.startswith(f"| {check}")]
        assert line.endswith("| yes |"), line
