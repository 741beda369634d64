"""The CI smoke run of the benchmark suite: `scripts/bench --quick` on SQLite and PostgreSQL.

It checks that every section ran and produced figures (or said why it could not), never how fast:
timings are noise on a shared machine, and the suite reports targets, it does not enforce them.
The test's name holds "postgres" so that `-k postgres` (the PostgreSQL half) runs it.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.bench.core import SECTIONS
from tests.conftest import POSTGRES_URL, postgres_required

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 600  # a hang guard only: the quick run takes well under a minute when idle

# Sections that must produce figures; the others may be not available yet (a module or a ledger
# method another change adds), but must then say so.
ALWAYS_MEASURED = ("ceilings", "commands", "hot", "growth")


def _section(name: str) -> str:
    return name.replace("_", "-")


def _run_quick(out: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"LEDGER_VENV": sys.prefix}
    return subprocess.run(
        [
            str(ROOT / "scripts" / "bench"),
            "--quick",
            "--postgres-url",
            POSTGRES_URL,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def _rates(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in figures if f["unit"].endswith("/s")]


def test_bench_quick_runs_every_section_on_sqlite_and_postgres(tmp_path: Path) -> None:
    if not postgres_required():
        pytest.skip("PostgreSQL unreachable and not required (scripts/test said so)")
    out = tmp_path / "r.json"
    finished = _run_quick(out)
    assert finished.returncode == 0, finished.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["failures"] == []
    assert results["config"]["quick"] is True
    assert {"nproc", "python", "sqlite", "date", "postgres"} <= set(results["machine"])
    figures, missing = results["figures"], results["not_available"]
    measured = {_section(f["section"]) for f in figures}
    explained = {_section(m["section"]) for m in missing}
    assert set(ALWAYS_MEASURED) <= measured
    assert set(SECTIONS) <= measured | explained
    for backend in ("sqlite", "postgres"):
        ceilings = [f for f in figures if f["section"] == "ceilings" and f["backend"] == backend]
        assert len(ceilings) >= 4, backend
        commands = [f for f in figures if f["section"] == "commands" and f["backend"] == backend]
        assert commands and all(f["ceiling"] is not None for f in commands), backend
    for figure in _rates(figures):
        assert figure["value"]["median"] > 0, figure
        assert figure["ceiling"] is None or figure["ceiling"]["median"] > 0, figure
    overshoots = [f for f in figures if f["section"] == "hot" and f["unit"] == "count"]
    assert overshoots and all(f["value"]["high"] == 0 and f["met"] for f in overshoots)
    _check_instructions(figures, missing)


def _check_instructions(figures: list[dict[str, Any]], missing: list[dict[str, Any]]) -> None:
    """Counted under valgrind (SQLite only in --quick): a command costs more instructions than
    one raw transaction, and a batched command more than one raw row; without valgrind the
    section says why it did not count."""
    counted = [f for f in figures if f["section"] == "instructions"]
    if shutil.which("valgrind") is None:
        assert any(m["section"] == "instructions" and "valgrind" in m["reason"] for m in missing)
        return
    assert {f["backend"] for f in counted} == {"sqlite"}
    assert len(counted) == 2
    for figure in counted:
        assert figure["unit"] == "instructions/cmd" and figure["better"] == "lower"
        assert figure["value"]["median"] > figure["ceiling"]["median"] > 0, figure
