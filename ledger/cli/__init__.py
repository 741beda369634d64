"""The `ledger` command line: it parses, calls Ledger and renders; no rules and no SQL here.

Importing the package registers every command on `ledger.cli.main.app`.
"""

from ledger.cli import (  # noqa: F401  (each registers commands)
    audit,
    demo,
    incident,
    jobs,
    project,
    records,
    schema,
    serve,
    show,
    simulate,
    submit,
    whatif,
)
