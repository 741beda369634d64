"""What a user chooses or proves: Pro quiz and terms, jurisdiction, cooling-off, BNB discount."""

from datetime import timedelta

from ledger.commands import (
    AgreeProTerms,
    RecordProQuiz,
    SetBnbDiscount,
    SetProJurisdiction,
    StartCoolingOff,
)
from ledger.commands.lifecycle import UserCommand
from ledger.domain.base import Stamp
from ledger.domain.user_profile import UserProfile
from ledger.outcomes import Status
from ledger.times import format_time
from ledger.unit_of_work import Decided, UnitOfWork

COOLING_OFF_DURATIONS = {"1d": timedelta(days=1), "3d": timedelta(days=3), "1w": timedelta(weeks=1)}


def record_pro_quiz(unit: UnitOfWork, command: RecordProQuiz) -> Decided:
    profile, stamp = _profile(unit, command)
    profile.record_pro_quiz(passed=command.passed, stamp=stamp)
    return Decided(status=Status.ACCEPTED, context={"user": profile.user, "passed": command.passed})


def agree_pro_terms(unit: UnitOfWork, command: AgreeProTerms) -> Decided:
    profile, stamp = _profile(unit, command)
    profile.agree_pro_terms(stamp=stamp)
    return Decided(status=Status.ACCEPTED, context={"user": profile.user})


def set_pro_jurisdiction(unit: UnitOfWork, command: SetProJurisdiction) -> Decided:
    profile, stamp = _profile(unit, command)
    profile.set_pro_jurisdiction(supported=command.supported, stamp=stamp)
    return Decided(
        status=Status.ACCEPTED, context={"user": profile.user, "supported": command.supported}
    )


def start_cooling_off(unit: UnitOfWork, command: StartCoolingOff) -> Decided:
    profile, stamp = _profile(unit, command)
    requested_until = stamp.effective_at + COOLING_OFF_DURATIONS[command.period]
    current = profile.cooling_off_until
    # A cooling-off period cannot be shortened: a shorter request leaves the longer one in force.
    until = requested_until if current is None else max(current, requested_until)
    profile.start_cooling_off(period=command.period, until=until, stamp=stamp)
    return Decided(
        status=Status.ACCEPTED,
        context={
            "user": profile.user,
            "period": command.period,
            "cooling_off_until": format_time(until),
            "extended": current is None or requested_until > current,
        },
    )


def set_bnb_discount(unit: UnitOfWork, command: SetBnbDiscount) -> Decided:
    profile, stamp = _profile(unit, command)
    profile.set_bnb_discount(enabled=command.enabled, stamp=stamp)
    return Decided(
        status=Status.ACCEPTED, context={"user": profile.user, "enabled": command.enabled}
    )


def _profile(unit: UnitOfWork, command: UserCommand) -> tuple[UserProfile, Stamp]:
    profile = unit.user_profile(command.user)
    stamp = unit.stamp(profile)
    if profile is None:
        profile = UserProfile.register(user=command.user, stamp=stamp)
    unit.change(profile)
    return profile, stamp
