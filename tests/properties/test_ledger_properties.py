"""Properties of the ledger over random command sequences (hypothesis state machine).

Goal: whatever the order of transfers in and out, verifications, price marks, quota overrides,
retries and bad input, the ledger agrees with a plain-dict model of DOMAIN.md, and after every
step: (a) each cap-eligible asset's pool total T equals the sum of cross + portfolio holdings;
(b) no holding is negative; (c) a transfer-in is accepted only within q_max, so T never passes U
through one; (d) invalid input records nothing; (e) the stored events, read by another Ledger
instance, reproduce the model's state; (f) the asset_totals projection equals the holdings.
Method: each example runs on a fresh store (a SQLite file; fewer examples on a PostgreSQL schema).
"""

import itertools
import json
import shutil
import tempfile
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from psycopg import sql

from ledger import Ledger
from ledger.commands import CommandInvalid, parse_command
from ledger.domain.account import MarginAccount
from ledger.domain.asset_pool import AssetPool
from ledger.outcomes import Outcome
from projections.queries import assets_view
from tests.concurrency.store import assert_serial_replay_identical, recorded_requests
from tests.conftest import POSTGRES_URL, postgres_required
from tests.properties.ledger_model import (
    ACCOUNTS,
    ASSETS,
    BAND_B_RATIO_MIN,
    BAND_C_RATIO_MIN,
    CAP_ELIGIBLE,
    FIXED_QUOTA_USDT,
    INVALID,
    UPPER_LIMIT,
    USERS,
    Expected,
    LedgerModel,
)
from tests.support import at

# Quantities: whole cents up to 600 (ABC's U is 1000, F is 30 tokens at price 2), a few with a
# third decimal place (too precise for ABC, fine for XYZ and USDT).
cents = st.integers(min_value=1, max_value=60_000).map(lambda n: Decimal(n) / 100)
quantities = st.one_of(
    cents,
    cents.map(lambda q: q + Decimal("0.001")),
    st.sampled_from([Decimal(50), Decimal(100), Decimal(800), Decimal(1000), Decimal(1001)]),
)
# Business time offsets (minutes) from the latest time used so far: mostly now or later,
# sometimes earlier (DOMAIN.md §8: invalid only for aggregates with a later event).
offsets = st.sampled_from([0, 0, 0, 1, 2, 5, -1, -3])
# Transfers of ABC into capped accounts: often below F (30 tokens at price 2) to walk the bands
# up to D, some large enough to be refused in band A.
capped_quantities = st.one_of(
    st.integers(min_value=1, max_value=4_000).map(lambda n: Decimal(n) / 100),
    st.integers(min_value=1, max_value=60_000).map(lambda n: Decimal(n) / 100),
)
prices = st.sampled_from(["0.5", "1", "2", "2.5", "4"]).map(Decimal)

# Each makes a valid `transfer_in`/`transfer_out` of 1 ABC to u*:cross invalid (STYLE.md §5).
BAD_MOVEMENTS: list[dict[str, Any]] = [
    {"quantity": "-5"},
    {"quantity": "0"},
    {"quantity": "1e3"},
    {"quantity": "NaN"},
    {"quantity": 1.5},  # a binary float
    {"quantity": "1.001"},  # ABC keeps 2 decimal places
    {"asset": "QQQ"},  # not listed
    {"asset": "abc"},
    {"account": "isolated:QQQUSDT"},  # not a pair of listed assets
    {"account": "isolated:ABCUSDT", "asset": "XYZ"},  # not one of the pair's assets
    {"account": "margin"},
    {"effective_at": "2026-03-02T09:00:00"},  # no timezone
    {"effective_at": "2026-03-01T09:00:00Z"},  # before anything was listed
    {"type": "transfer_sideways"},
    {"unexpected": "field"},
    {"request_id": ""},
]
BAD_OTHER_COMMANDS: list[dict[str, Any]] = [
    {"type": "mark_prices", "prices": {"USDT": "1"}},  # the quote asset is always 1
    {"type": "mark_prices", "prices": {"QQQ": "1"}},
    {"type": "mark_prices", "prices": {"ABC": "0"}},
    {"type": "mark_prices", "prices": {}},
    {
        "type": "set_account_quota",
        "account": "isolated:ABCUSDT",
        "asset": "ABC",
        "fixed_quota_usdt": "100",
    },
    {"type": "set_account_quota", "asset": "USDT", "fixed_quota_usdt": "100"},
    {"type": "set_account_quota", "asset": "ABC", "fixed_quota_usdt": "-1"},
    {"type": "set_collateral_cap", "asset": "USDT", "upper_limit": "10"},  # rank 1: not capped
    {
        "type": "set_collateral_cap",
        "asset": "ABC",
        "upper_limit": "10",
        "band_b_ratio_min": "0.95",
    },  # band B above band C
    {"type": "list_asset", "asset": "ABC", "collateral_rank": 8},  # already listed
    {"type": "list_asset", "asset": "NEW", "collateral_rank": 11},
    {"type": "complete_verification", "transfer_request_id": "never-sent", "passed": True},
]


class LedgerMachine(RuleBasedStateMachine):
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.directory: str | None = None
        self.schema: str | None = None
        self.replay_schema: str | None = None
        if self.backend == "sqlite":
            self.directory = tempfile.mkdtemp(prefix="ledger-properties-")
            self.url = f"sqlite:///{self.directory}/ledger.sqlite3"
            self.replay_url = f"sqlite:///{self.directory}/replay.sqlite3"
        else:
            self.schema = f"test_prop_{uuid.uuid4().hex[:16]}"
            self.replay_schema = f"{self.schema}_replay"
            self.url = f"{POSTGRES_URL}?schema={self.schema}"
            self.replay_url = f"{POSTGRES_URL}?schema={self.replay_schema}"
        self.ledger = Ledger(self.url)
        self.reader = Ledger(self.url)  # another instance: state only from the stored events
        self.model = LedgerModel()
        self.request_numbers = itertools.count(1)
        self.clock = 0  # minutes after T0, the latest business time used
        self.sent: list[tuple[dict[str, Any], Outcome]] = []  # valid commands and first answers
        for data in (
            self._command("list_asset", asset="USDT", collateral_rank=1, minute=0),
            self._command(
                "list_asset", asset="ABC", collateral_rank=8, quantity_decimals=2, minute=0
            ),
            self._command("list_asset", asset="XYZ", collateral_rank=9, minute=0),
            self._command(
                "set_collateral_cap",
                asset="ABC",
                upper_limit=str(UPPER_LIMIT),
                fixed_quota_usdt=str(FIXED_QUOTA_USDT),
                minute=0,
            ),
            self._command("mark_prices", prices={"ABC": "2", "XYZ": "5"}, minute=0),
        ):
            outcome = self._execute(data)
            assert outcome is not None and outcome.is_accepted, outcome

    def teardown(self) -> None:
        """(e) once more from scratch: a brand-new instance rebuilds every aggregate from the
        store, and the recorded commands replayed into an empty store answer the same."""
        try:
            with Ledger(self.url) as fresh:
                self._check_stored_state(fresh)
                self._check_every_recorded_transfer_within_cap(fresh)
                recorded = recorded_requests(fresh)
            assert_serial_replay_identical(recorded, self.replay_url)
        finally:
            self.ledger.close()
            self.reader.close()
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
            if self.schema is not None:
                with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                    for schema in (self.schema, self.replay_schema):
                        connection.execute(
                            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                                sql.Identifier(schema)
                            )
                        )

    # --- rules: commands the model predicts ------------------------------------------------

    @rule(
        user=st.sampled_from(USERS),
        account=st.sampled_from(ACCOUNTS),
        asset=st.sampled_from(ASSETS),
        quantity=quantities,
        risk_flagged=st.sampled_from([False, False, True]),
        channel=st.sampled_from(["api", "client"]),
        offset=offsets,
    )
    def transfer_in(
        self,
        user: str,
        account: str,
        asset: str,
        quantity: Decimal,
        risk_flagged: bool,
        channel: str,
        offset: int,
    ) -> None:
        self._transfer_in(user, account, asset, quantity, risk_flagged, channel, offset)

    @rule(
        user=st.sampled_from(USERS),
        account=st.sampled_from(["cross", "portfolio"]),
        quantity=capped_quantities,
        edge=st.sampled_from([None, "q_max", "above_q_max", "to_next_band"]),
        offset=offsets,
    )
    def transfer_in_capped(
        self, user: str, account: str, quantity: Decimal, edge: str | None, offset: int
    ) -> None:
        """ABC into the accounts the cap governs: exactly q_max, just above it, or up to the
        next band's edge (80%, 90%, 100% of U), so that every band is visited."""
        cap = self.model.cap_for(user, account, "ABC", max(0, self.clock + offset))
        assert cap is not None
        if edge == "q_max" and cap.quantity_max > 0:
            quantity = cap.quantity_max
        elif edge == "above_q_max":
            quantity = cap.quantity_max + Decimal("0.01")
        elif edge == "to_next_band":
            edges = [r * UPPER_LIMIT for r in (BAND_B_RATIO_MIN, BAND_C_RATIO_MIN, Decimal(1))]
            gap = min((e - cap.platform_total for e in edges if e > cap.platform_total), default=0)
            if min(gap, cap.quantity_max) > 0:
                quantity = min(gap, cap.quantity_max)
        self._transfer_in(user, account, "ABC", quantity, False, "api", offset)

    @rule(
        data=st.data(),
        asset=st.sampled_from(["ABC", "ABC", "XYZ", "USDT"]),
        quantity=capped_quantities,
        channel=st.sampled_from(["client", "client", "api"]),
    )
    def first_transfer_flagged_by_risk(
        self, data: st.DataObject, asset: str, quantity: Decimal, channel: str
    ) -> None:
        """DOMAIN.md §2 on an account not open yet: refused (api) or pending verification."""
        unopened = [
            (u, a) for u in USERS for a in ACCOUNTS if self.model.status.get((u, a)) != "open"
        ]
        if not unopened:
            return
        user, account = data.draw(st.sampled_from(unopened))
        if account.startswith("isolated:") and asset == "XYZ":
            asset = "ABC"
        self._transfer_in(user, account, asset, quantity, True, channel, 0)

    @precondition(lambda self: bool(self.model.pending))
    @rule(data=st.data(), passed=st.booleans(), offset=offsets)
    def complete_verification(self, data: st.DataObject, passed: bool, offset: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.model.pending)))
        transfer_request_id = self.model.pending[key][0]
        self._complete_verification(key, transfer_request_id, passed, offset)

    @rule(
        data=st.data(),
        asset=st.sampled_from(ASSETS),
        share=st.sampled_from(["all", "half", "more", "any"]),
        quantity=quantities,
        offset=offsets,
    )
    def transfer_out(
        self, data: st.DataObject, asset: str, share: str, quantity: Decimal, offset: int
    ) -> None:
        """Mostly from an account that holds something, sometimes from any account at all."""
        holders = sorted(k for k, assets in self.model.holdings.items() if any(assets.values()))
        every = [(u, a) for u in USERS for a in ACCOUNTS]
        user, account = data.draw(st.sampled_from(holders or every) | st.sampled_from(every))
        if holders and (user, account) in holders:
            asset = data.draw(st.sampled_from(sorted(self.model.holdings[(user, account)])))
        held = self.model.holding((user, account), asset)
        if held > 0 and share == "all":
            quantity = held
        elif held > 0 and share == "half":
            quantity = max(Decimal("0.01"), (held / 2).quantize(Decimal("0.01")))
        elif share == "more":
            quantity = held + Decimal("0.01")
        minute = self._minute(offset)
        command = self._command(
            "transfer_out",
            user=user,
            account=account,
            asset=asset,
            quantity=str(quantity),
            minute=minute,
        )
        expected = self.model.predict_transfer_out(
            user=user, account=account, asset=asset, quantity=quantity, minute=minute
        )
        self._execute_expecting(command, expected)

    @rule(
        marks=st.dictionaries(st.sampled_from(CAP_ELIGIBLE), prices, min_size=1),
        offset=offsets,
    )
    def mark_prices(self, marks: dict[str, Decimal], offset: int) -> None:
        minute = self._minute(offset)
        command = self._command(
            "mark_prices", prices={a: str(p) for a, p in marks.items()}, minute=minute
        )
        expected = self.model.predict_mark_prices(prices=marks, minute=minute)
        self._execute_expecting(command, expected)

    @rule(
        user=st.sampled_from(USERS),
        account=st.sampled_from(ACCOUNTS),
        asset=st.sampled_from(ASSETS),
        quota=st.sampled_from(["50", "100", "1000", "20000"]).map(Decimal),
        offset=offsets,
    )
    def set_account_quota(
        self, user: str, account: str, asset: str, quota: Decimal, offset: int
    ) -> None:
        minute = self._minute(offset)
        command = self._command(
            "set_account_quota",
            user=user,
            account=account,
            asset=asset,
            fixed_quota_usdt=str(quota),
            minute=minute,
        )
        expected = self.model.predict_set_account_quota(
            user=user, account=account, asset=asset, fixed_quota_usdt=quota, minute=minute
        )
        self._execute_expecting(command, expected)

    # --- rules: retries and bad input ------------------------------------------------------

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data(), same_payload=st.booleans())
    def send_a_request_id_again(self, data: st.DataObject, same_payload: bool) -> None:
        """The same request again: the first outcome, marked duplicate, nothing new recorded.
        The same request_id with another payload: invalid (RequestIdReused), nothing recorded."""
        sent, first = data.draw(st.sampled_from(self.sent))
        if not same_payload:
            self._expect_invalid(dict(sent) | {"actor": "admin:someone-else"})
            return
        before = self._position()
        again = self.ledger.execute(parse_command(json.loads(json.dumps(sent))))
        assert again.duplicate, again
        assert again.model_copy(update={"duplicate": False}) == first
        assert self._position() == before

    @rule(
        bad=st.sampled_from(BAD_MOVEMENTS),
        kind=st.sampled_from(["transfer_in", "transfer_out"]),
        user=st.sampled_from(USERS),
    )
    def invalid_movement(self, bad: dict[str, Any], kind: str, user: str) -> None:
        command = self._command(
            kind, user=user, account="cross", asset="ABC", quantity="1", minute=self.clock
        )
        self._expect_invalid(command | bad)

    @rule(bad=st.sampled_from(BAD_OTHER_COMMANDS))
    def invalid_other_command(self, bad: dict[str, Any]) -> None:
        base: dict[str, Any] = {}
        if bad["type"] in ("set_account_quota", "complete_verification"):
            base = {"user": "u1", "account": "cross"}
        self._expect_invalid(self._command(bad["type"], minute=self.clock, **base) | bad)

    # --- invariants after every step -------------------------------------------------------

    @invariant()
    def stored_state_matches_the_model(self) -> None:
        self._check_stored_state(self.reader)

    @invariant()
    def asset_totals_match_the_holdings(self) -> None:
        views = {view.asset: view for view in assets_view(self.reader)}
        for asset in ASSETS:
            capped, isolated = self.model.bucket_totals(asset)
            assert Decimal(views[asset].total) == capped, (asset, views[asset], capped)
            assert Decimal(views[asset].isolated_total) == isolated, (asset, views[asset])
            if views[asset].capped:  # the read model's T is the pool's T
                pool = self.reader.get_aggregate(AssetPool, AssetPool.create_id(asset))
                assert pool.platform_total == capped, (asset, pool.platform_total, capped)
        # Only transfers move T here, each within q_max: T never passes U.
        assert Decimal(views["ABC"].total) <= UPPER_LIMIT, views["ABC"]

    # --- helpers ---------------------------------------------------------------------------

    def _minute(self, offset: int) -> int:
        minute = max(0, self.clock + offset)
        self.clock = max(self.clock, minute)
        return minute

    def _command(self, type_: str, *, minute: int, **fields: Any) -> dict[str, Any]:
        return {
            "type": type_,
            "request_id": f"r{next(self.request_numbers)}",
            "effective_at": at(minute),
            **fields,
        }

    def _position(self) -> int:
        return self.ledger.recorder.max_notification_id() or 0

    def _execute(self, data: dict[str, Any]) -> Outcome | None:
        """Run one command as the CLI would; None when it was invalid (then nothing recorded)."""
        before = self._position()
        try:
            outcome = self.ledger.execute(parse_command(json.loads(json.dumps(data))))
        except CommandInvalid:
            assert self._position() == before, "invalid input recorded something"
            return None
        assert not outcome.duplicate, outcome
        # One notification per event the outcome lists, the Request record last.
        assert self._position() - before == len(outcome.events), outcome
        self.sent.append((data, outcome))
        return outcome

    def _execute_expecting(self, data: dict[str, Any], expected: Expected | str) -> Outcome | None:
        outcome = self._execute(data)
        if expected == INVALID:
            assert outcome is None, (data, outcome)
            return None
        assert isinstance(expected, Expected)
        assert outcome is not None, (data, expected)
        assert outcome.status == expected.status, (data, expected, outcome)
        assert outcome.reason == expected.reason, (data, expected, outcome)
        if expected.cap is not None:
            context = outcome.context
            assert context["band"] == expected.cap.band, (data, expected, context)
            assert Decimal(context["total"]) == expected.cap.platform_total, (expected, context)
            assert Decimal(context["q_max"]) == expected.cap.quantity_max, (expected, context)
            assert Decimal(context["price_usdt"]) == expected.cap.price_usdt, (expected, context)
            assert Decimal(context["fixed_quota"]) == expected.cap.fixed_quota, (expected, context)
        return outcome

    def _expect_invalid(self, data: dict[str, Any]) -> None:
        assert self._execute(data) is None, data

    def _transfer_in(
        self,
        user: str,
        account: str,
        asset: str,
        quantity: Decimal,
        risk_flagged: bool,
        channel: str,
        offset: int,
    ) -> None:
        minute = self._minute(offset)
        command = self._command(
            "transfer_in",
            user=user,
            account=account,
            asset=asset,
            quantity=str(quantity),
            risk_flagged=risk_flagged,
            channel=channel,
            minute=minute,
        )
        expected = self.model.predict_transfer_in(
            request_id=command["request_id"],
            user=user,
            account=account,
            asset=asset,
            quantity=quantity,
            risk_flagged=risk_flagged,
            channel=channel,
            minute=minute,
        )
        outcome = self._execute_expecting(command, expected)
        if outcome is not None and outcome.is_accepted:
            self._check_within_cap(outcome)

    def _complete_verification(
        self, key: tuple[str, str], transfer_request_id: str, passed: bool, offset: int
    ) -> None:
        user, account = key
        minute = self._minute(offset)
        data = self._command(
            "complete_verification",
            user=user,
            account=account,
            transfer_request_id=transfer_request_id,
            passed=passed,
            minute=minute,
        )
        expected = self.model.predict_complete_verification(
            user=user,
            account=account,
            transfer_request_id=transfer_request_id,
            passed=passed,
            minute=minute,
        )
        outcome = self._execute_expecting(data, expected)
        if outcome is not None and outcome.is_accepted and passed:
            self._check_within_cap(outcome)

    def _check_within_cap(self, outcome: Outcome) -> None:
        """(c) An accepted transfer-in of a capped asset was within q_max, so T + q <= U."""
        context = outcome.context
        if "q_max" not in context:
            return
        assert Decimal(context["requested"]) <= Decimal(context["q_max"]), context
        assert Decimal(context["total"]) + Decimal(context["requested"]) <= UPPER_LIMIT, context

    def _check_stored_state(self, reader: Ledger) -> None:
        """(a), (b), (e): the aggregates as the store replays them equal the model."""
        sums = dict.fromkeys(CAP_ELIGIBLE, Decimal(0))
        for user in USERS:
            for account in ACCOUNTS:
                key = (user, account)
                stored = reader.get_aggregate(MarginAccount, MarginAccount.create_id(user, account))
                if key not in self.model.status:
                    assert stored is None, (key, stored)
                    continue
                assert stored is not None, key
                assert stored.status.value == self.model.status[key], (key, stored.status)
                held = {a: q for a, q in stored.holdings.items() if q != 0}
                expected = {a: q for a, q in self.model.holdings.get(key, {}).items() if q != 0}
                assert held == expected, (key, held, expected)
                assert all(q >= 0 for q in stored.holdings.values()), (key, stored.holdings)
                pending = self.model.pending.get(key)
                if pending is None:
                    assert stored.pending_transfer is None, (key, stored.pending_transfer)
                else:
                    assert stored.pending_transfer == {
                        "transfer_request_id": pending[0],
                        "asset": pending[1],
                        "quantity": pending[2],
                    }, (key, stored.pending_transfer)
                if not account.startswith("isolated:"):
                    for asset in CAP_ELIGIBLE:
                        sums[asset] += stored.holding(asset)
        for asset in CAP_ELIGIBLE:
            pool = reader.get_aggregate(AssetPool, AssetPool.create_id(asset))
            assert pool.platform_total == sums[asset], (asset, pool.platform_total, sums)
            assert pool.platform_total == self.model.pools[asset], (asset, pool.platform_total)
            assert pool.platform_total >= 0
        abc = reader.get_aggregate(AssetPool, AssetPool.create_id("ABC"))
        assert abc.platform_total <= UPPER_LIMIT, abc.platform_total

    def _check_every_recorded_transfer_within_cap(self, reader: Ledger) -> None:
        for record in recorded_requests(reader):
            outcome = Outcome.model_validate(record.outcome)
            is_transfer_in = record.command_type in ("transfer_in", "complete_verification")
            if (
                is_transfer_in
                and outcome.is_accepted
                and outcome.context.get("transfer") != "cancelled"
            ):
                self._check_within_cap(outcome)


class PostgresLedgerMachine(LedgerMachine):
    backend = "postgres"


TestLedgerPropertiesOnSQLite = LedgerMachine.TestCase
TestLedgerPropertiesOnSQLite.settings = settings(
    max_examples=30,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestLedgerPropertiesOnPostgres = pytest.mark.skipif(
    not postgres_required(), reason="PostgreSQL unreachable and not required"
)(PostgresLedgerMachine.TestCase)
TestLedgerPropertiesOnPostgres.settings = settings(
    max_examples=8,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
