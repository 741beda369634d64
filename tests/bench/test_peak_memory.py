"""The rebuild figure's peak memory is the child's own (figure 4: "peak memory flat").

Linux carries getrusage's ru_maxrss across exec, so a child started by a parent that had grown
large reported the parent's peak; the bench's parent holds generated stores and earlier figures
by the time it starts a rebuild child. A child started from a parent holding far more memory
than any child needs must report a peak well below it.
"""

import subprocess
import sys

PARENT_MB = 300
CHILD = "from ledger.bench.core import peak_rss_mb; print(peak_rss_mb())"


def _child_peak_mb() -> float:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    )
    return float(completed.stdout.strip())


def test_a_child_reports_its_own_peak_not_its_large_parents() -> None:
    held = bytearray(PARENT_MB * 1024 * 1024)
    for page in range(0, len(held), 4096):  # touched, so resident
        held[page] = 1
    peak = _child_peak_mb()
    assert 0 < peak < PARENT_MB / 2, peak
    del held


def test_a_child_that_grows_reports_its_growth() -> None:
    grows = "blob = bytearray(120 * 1024 * 1024)\nfor i in range(0, len(blob), 4096): blob[i] = 1\n"
    completed = subprocess.run(
        [sys.executable, "-c", grows + CHILD],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert float(completed.stdout.strip()) >= 120, completed.stdout
