"""UserProfile: what a user chose or proved, across all their accounts (DOMAIN.md §5-6)."""

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from ledger.domain.base import LedgerAggregate, Stamp, ledger_id


class UserProfile(LedgerAggregate):
    if TYPE_CHECKING:  # state set by the events; annotations here would make a dataclass
        user: str
        pro_quiz_passed: bool
        pro_terms_agreed: bool
        pro_jurisdiction_supported: bool
        cooling_off_until: datetime | None
        bnb_discount_enabled: bool

    class SnapshotState(LedgerAggregate.SnapshotState):  # the state above, in snapshots
        user: str
        pro_quiz_passed: bool
        pro_terms_agreed: bool
        pro_jurisdiction_supported: bool
        cooling_off_until: datetime | None
        bnb_discount_enabled: bool

    @staticmethod
    def create_id(user: str) -> UUID:
        return ledger_id(f"user:{user}")

    class Registered(LedgerAggregate.Created):
        user: str

        def apply(self, profile: "UserProfile") -> None:
            profile.user = self.user
            profile.pro_quiz_passed = False
            profile.pro_terms_agreed = False
            profile.pro_jurisdiction_supported = False
            profile.cooling_off_until = None
            profile.bnb_discount_enabled = False

    class ProQuizRecorded(LedgerAggregate.Event):
        passed: bool

        def apply(self, profile: "UserProfile") -> None:
            profile.pro_quiz_passed = self.passed

    class ProTermsAgreed(LedgerAggregate.Event):
        def apply(self, profile: "UserProfile") -> None:
            profile.pro_terms_agreed = True

    class ProJurisdictionSet(LedgerAggregate.Event):
        supported: bool

        def apply(self, profile: "UserProfile") -> None:
            profile.pro_jurisdiction_supported = self.supported

    class CoolingOffStarted(LedgerAggregate.Event):
        period: str
        cooling_off_until: datetime

        def apply(self, profile: "UserProfile") -> None:
            profile.cooling_off_until = self.cooling_off_until

    class BnbDiscountSet(LedgerAggregate.Event):
        enabled: bool

        def apply(self, profile: "UserProfile") -> None:
            profile.bnb_discount_enabled = self.enabled

    @classmethod
    def register(cls, *, user: str, stamp: Stamp) -> "UserProfile":
        return cls._create(cls.Registered, id=cls.create_id(user), user=user, **stamp.fields())

    def record_pro_quiz(self, *, passed: bool, stamp: Stamp) -> None:
        self.trigger_event(self.ProQuizRecorded, passed=passed, **stamp.fields())

    def agree_pro_terms(self, *, stamp: Stamp) -> None:
        self.trigger_event(self.ProTermsAgreed, **stamp.fields())

    def set_pro_jurisdiction(self, *, supported: bool, stamp: Stamp) -> None:
        self.trigger_event(self.ProJurisdictionSet, supported=supported, **stamp.fields())

    def start_cooling_off(self, *, period: str, until: datetime, stamp: Stamp) -> None:
        # A cooling-off period can be extended, never shortened (issue #4).
        assert self.cooling_off_until is None or until >= self.cooling_off_until, until
        self.trigger_event(
            self.CoolingOffStarted, period=period, cooling_off_until=until, **stamp.fields()
        )

    def set_bnb_discount(self, *, enabled: bool, stamp: Stamp) -> None:
        self.trigger_event(self.BnbDiscountSet, enabled=enabled, **stamp.fields())

    def is_cooling_off(self, at: datetime) -> bool:
        return self.cooling_off_until is not None and at < self.cooling_off_until
