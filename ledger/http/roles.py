"""Who may do what through the HTTP service: the roles of API keys and the line between user
commands and parameter/administrator commands, in one table."""

from enum import StrEnum

from ledger.commands import COMMAND_TYPES


class Role(StrEnum):
    SERVICE = (
        "service"  # the platform's services (transfer, lending, matching, risk): user commands
    )
    ADMIN = "admin"  # also parameters, administrator actions and jobs
    AUDITOR = "auditor"  # reads only


class Access(StrEnum):
    READ = "read"
    USER_COMMAND = "user_command"
    ADMIN_COMMAND = "admin_command"


GRANTS: dict[Role, frozenset[Access]] = {
    Role.AUDITOR: frozenset({Access.READ}),
    Role.SERVICE: frozenset({Access.READ, Access.USER_COMMAND}),
    Role.ADMIN: frozenset({Access.READ, Access.USER_COMMAND, Access.ADMIN_COMMAND}),
}

# The line: a command that acts for one user on their own accounts (what the platform's services
# send on a user's behalf) is a user command; whatever sets a rule number, a price, a listing or a
# cap (DOMAIN.md: "every number is a parameter"), overrides a user (admin_*), moves platform money
# (the insurance fund) or runs over every account (the jobs) is an administrator's.
COMMAND_ACCESS: dict[str, Access] = {
    # parameters (COMMANDS.md "Parameters (administrators)")
    "list_asset": Access.ADMIN_COMMAND,
    "set_collateral_cap": Access.ADMIN_COMMAND,
    "set_account_quota": Access.ADMIN_COMMAND,  # overrides F for one account: a risk decision
    "mark_prices": Access.ADMIN_COMMAND,
    "set_borrow_terms": Access.ADMIN_COMMAND,
    "set_margin_thresholds": Access.ADMIN_COMMAND,
    "set_platform_rules": Access.ADMIN_COMMAND,
    "set_maintenance_brackets": Access.ADMIN_COMMAND,
    # administrators acting on a user, platform money, jobs over every account
    "admin_set_borrowing": Access.ADMIN_COMMAND,
    "admin_force_classic": Access.ADMIN_COMMAND,
    "fund_insurance": Access.ADMIN_COMMAND,
    "accrue_interest": Access.ADMIN_COMMAND,
    "check_margins": Access.ADMIN_COMMAND,
    # user commands
    "transfer_in": Access.USER_COMMAND,
    "complete_verification": Access.USER_COMMAND,
    "transfer_out": Access.USER_COMMAND,
    "borrow": Access.USER_COMMAND,
    "repay": Access.USER_COMMAND,
    "settle_trade": Access.USER_COMMAND,
    "record_pro_quiz": Access.USER_COMMAND,
    "agree_pro_terms": Access.USER_COMMAND,
    "set_pro_jurisdiction": Access.USER_COMMAND,  # the KYC service's verdict on the user
    "start_cooling_off": Access.USER_COMMAND,
    "set_bnb_discount": Access.USER_COMMAND,
    "switch_mode": Access.USER_COMMAND,
    "set_auto_top_up": Access.USER_COMMAND,
}
_TYPES = {c.model_fields["type"].annotation.__args__[0] for c in COMMAND_TYPES}  # type: ignore[union-attr]
assert set(COMMAND_ACCESS) == _TYPES, set(COMMAND_ACCESS) ^ _TYPES  # every command, once


def command_access(command_type: str) -> Access | None:
    """The access a command type needs; None for a type that is not a command."""
    return COMMAND_ACCESS.get(command_type)


def may(role: Role, access: Access) -> bool:
    return access in GRANTS[role]


def may_claim_actor(role: Role, actor: str | None) -> bool:
    """A service key may not sign its commands as an administrator (`actor: "admin:..."`): the
    recorded actor would claim an authority the key does not have."""
    return actor is None or not actor.startswith("admin:") or may(role, Access.ADMIN_COMMAND)
