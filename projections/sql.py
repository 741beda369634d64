"""One SQL text for both backends: table declarations, placeholders, and Decimal columns.

Read models do their arithmetic in Python with Decimal (SQLite has no exact decimal type, and
its SUM would go through floats), so SQL here only stores and fetches rows.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from ledger.money import format_plain

# logical column type -> (SQLite, PostgreSQL)
COLUMN_TYPES = {
    "text": ("TEXT", "text"),
    "int": ("INTEGER", "bigint"),
    "dec": ("TEXT", "numeric"),  # Decimal: plain text on SQLite, exact numeric on PostgreSQL
}

IN_LIST_SIZE_MAX = 500  # SQLite builds before 3.32 allow 999 variables per statement


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, logical type); NOT NULL unless type ends "?"
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _type in self.columns)

    def create_statements(self, qualified: str, is_postgres: bool) -> list[str]:
        columns = []
        for name, logical in self.columns:
            nullable = logical.endswith("?")
            sql_type = COLUMN_TYPES[logical.rstrip("?")][1 if is_postgres else 0]
            columns.append(f"{name} {sql_type}{'' if nullable else ' NOT NULL'}")
        statements = [
            f"CREATE TABLE IF NOT EXISTS {qualified} ({', '.join(columns)}, "
            f"PRIMARY KEY ({', '.join(self.primary_key)}))"
        ]
        for index_columns in self.indexes:
            index = f"{self.name}_{'_'.join(index_columns)}_idx"
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {index} ON {qualified} ({', '.join(index_columns)})"
            )
        return statements


@lru_cache(maxsize=4096)  # the events of one command share their times: a batch repeats them
def time_key(moment: datetime) -> str:
    """A business time as fixed-width UTC text, so that text order is time order."""
    assert moment.tzinfo is not None, moment
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time_key(key: str) -> datetime:
    return datetime.fromisoformat(key.replace("Z", "+00:00"))


class Db:
    """A cursor inside one read-model transaction, speaking either backend's dialect.

    SQL is written once with `?` placeholders and `{table}` names; PostgreSQL gets `%s` and
    schema-qualified names.
    """

    def __init__(self, cursor: Any, *, is_postgres: bool, names: dict[str, str]) -> None:
        self.cursor = cursor
        self.is_postgres = is_postgres
        self.names = names

    def sql(self, text: str) -> str:
        text = text.format(**self.names)
        return text.replace("?", "%s") if self.is_postgres else text

    def execute(self, text: str, params: Sequence[Any] = ()) -> None:
        self.cursor.execute(self.sql(text), tuple(params))

    def executemany(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(row) for row in rows]
        if rows:
            self.cursor.executemany(self.sql(text), rows)

    def query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cursor.execute(self.sql(text), tuple(params))
        rows = self.cursor.fetchall()
        if self.is_postgres:
            return [tuple(row.values()) for row in rows]
        return [tuple(row) for row in rows]

    def query_in(
        self, text: str, keys: Iterable[Any], params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows for many keys: `text` has one `({keys})` where the key list goes, after params."""
        found: list[tuple[Any, ...]] = []
        keys = sorted(set(keys))
        for start in range(0, len(keys), IN_LIST_SIZE_MAX):
            chunk = keys[start : start + IN_LIST_SIZE_MAX]
            marks = ", ".join("?" for _ in chunk)
            found.extend(self.query(text.replace("({keys})", f"({marks})"), [*params, *chunk]))
        return found

    def dec(self, value: Decimal | None) -> Any:
        if value is None:
            return None
        return value if self.is_postgres else format_plain(value)

    def upsert(
        self, table: Table, rows: Iterable[Sequence[Any]], *, update: Sequence[str] | None = None
    ) -> None:
        """Insert rows, replacing those whose primary key exists."""
        columns = table.column_names
        update = [c for c in columns if c not in table.primary_key] if update is None else update
        marks = ", ".join("?" for _ in columns)
        conflict = ", ".join(table.primary_key)
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in update)
            if update
            else "DO NOTHING"
        )
        self.executemany(
            f"INSERT INTO {{{table.name}}} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({conflict}) {action}",
            rows,
        )


def dec(value: Any) -> Decimal:
    """A Decimal column's value from either backend (text on SQLite, numeric on PostgreSQL)."""
    return value if isinstance(value, Decimal) else Decimal(value)


def dec_or_none(value: Any) -> Decimal | None:
    return None if value is None else dec(value)
