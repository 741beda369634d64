"""The incident tools' Python API (ledger.incident): every exported name resolves, and
importing the package (as every `ledger` command does) loads none of the heavy libraries."""

import subprocess
import sys

import ledger.incident


def test_every_exported_name_resolves_to_its_function_or_model() -> None:
    for name in ledger.incident.__all__:
        assert getattr(ledger.incident, name).__name__ == name


def test_importing_the_package_loads_no_plotting_templates_or_parquet() -> None:
    probe = (
        "import sys, ledger.incident, ledger.cli; "
        "print(sorted(m for m in ('matplotlib', 'jinja2', 'pyarrow', 'fastapi', 'uvicorn') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
