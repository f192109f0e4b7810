"""bench/fuzz.py is run by hand for its figures; this keeps it runnable (it once called a
worker method that the redesign removed, and every mutant 'crashed' in the bench itself)."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_a_small_fuzz_run_crashes_and_loses_nothing(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "bench" / "fuzz.py"), "--count", "40", "--seed", "3",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines() if line.strip()}
    assert lines["crashed"] == "0" and lines["lost"] == "0", run.stdout
    assert int(lines["stored"]) + int(lines["quarantined"]) == 40, run.stdout
