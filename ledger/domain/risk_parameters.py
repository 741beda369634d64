"""RiskParameters: the platform's margin thresholds and rules, recorded as events (DOMAIN.md §4-6).

Created with DOMAIN.md's defaults when the first asset is listed, so even the defaults a decision
used are in the log, and a replay uses the numbers of its time.
"""

from typing import TYPE_CHECKING
from uuid import UUID

from ledger.domain.base import LedgerAggregate, Stamp, ledger_id
from ledger.domain.snapshots import InOrder
from ledger.params import (
    MAINTENANCE_BRACKETS_DEFAULT,
    MARGIN_THRESHOLDS_DEFAULT,
    PLATFORM_RULES_DEFAULT,
    MaintenanceBracket,
    MarginThresholds,
    PlatformRules,
)


class RiskParameters(LedgerAggregate):
    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        thresholds: dict[str, MarginThresholds]  # by "classic_3x", "classic_5x", "pro", "isolated"
        platform_rules: PlatformRules
        maintenance_brackets_default: tuple[MaintenanceBracket, ...]

    class SnapshotState(LedgerAggregate.SnapshotState):  # the state above, in snapshots
        thresholds: InOrder[dict[str, MarginThresholds]]
        platform_rules: PlatformRules
        maintenance_brackets_default: tuple[MaintenanceBracket, ...]

    @staticmethod
    def create_id() -> UUID:
        return ledger_id("risk-parameters")

    class Initialised(LedgerAggregate.Created):
        thresholds: dict[str, MarginThresholds]
        platform_rules: PlatformRules
        maintenance_brackets_default: tuple[MaintenanceBracket, ...]

        def apply(self, parameters: "RiskParameters") -> None:
            parameters.thresholds = dict(self.thresholds)
            parameters.platform_rules = self.platform_rules
            parameters.maintenance_brackets_default = self.maintenance_brackets_default

    class ThresholdsSet(LedgerAggregate.Event):
        mode: str
        thresholds: MarginThresholds

        def apply(self, parameters: "RiskParameters") -> None:
            parameters.thresholds[self.mode] = self.thresholds

    class PlatformRulesSet(LedgerAggregate.Event):
        platform_rules: PlatformRules

        def apply(self, parameters: "RiskParameters") -> None:
            parameters.platform_rules = self.platform_rules

    class DefaultMaintenanceBracketsSet(LedgerAggregate.Event):
        maintenance_brackets: tuple[MaintenanceBracket, ...]

        def apply(self, parameters: "RiskParameters") -> None:
            parameters.maintenance_brackets_default = self.maintenance_brackets

    @classmethod
    def initialise(cls, *, stamp: Stamp) -> "RiskParameters":
        return cls._create(
            cls.Initialised,
            id=cls.create_id(),
            thresholds=MARGIN_THRESHOLDS_DEFAULT,
            platform_rules=PLATFORM_RULES_DEFAULT,
            maintenance_brackets_default=MAINTENANCE_BRACKETS_DEFAULT,
            **stamp.fields(),
        )

    def set_thresholds(self, *, mode: str, thresholds: MarginThresholds, stamp: Stamp) -> None:
        assert mode in self.thresholds, mode
        assert thresholds.liquidation_level < thresholds.margin_call_level, thresholds
        self.trigger_event(self.ThresholdsSet, mode=mode, thresholds=thresholds, **stamp.fields())

    def set_platform_rules(self, *, platform_rules: PlatformRules, stamp: Stamp) -> None:
        self.trigger_event(self.PlatformRulesSet, platform_rules=platform_rules, **stamp.fields())

    def set_default_maintenance_brackets(
        self, *, maintenance_brackets: tuple[MaintenanceBracket, ...], stamp: Stamp
    ) -> None:
        assert maintenance_brackets and maintenance_brackets[-1].up_to_usdt is None
        self.trigger_event(
            self.DefaultMaintenanceBracketsSet,
            maintenance_brackets=maintenance_brackets,
            **stamp.fields(),
        )
