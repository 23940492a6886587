"""The one decision of the contact engine: send now, defer until T, or suppress.

`decide` is pure: same inputs, same decision. Checks run in a fixed order, so the reason
recorded in the contact log is stable:

1. blocking flags (cease_contact, dispute, bankruptcy, deceased, fraud, then policy extras);
2. stale by state: the loan closed, or left the stage the request was made for;
3. the loan's stage has no automated contact (write_off, special);
4. the borrower opted out of the channel;
5. vulnerable borrower (or a vulnerable flag such as hardship) on a blocked channel (voice);
6. no address for the channel (no phone, e-mail or postal address);
7. stale by age: past `created_at + max_deferral` or past the request's `valid_until` date;
8. time: quiet hours in the borrower's zone and rolling frequency caps; the earliest
   instant satisfying both, or stale if that is beyond the deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from datetime import UTC, datetime

from .local_time import ceil_minute, end_of_local_day, next_allowed, zone
from .model import BorrowerProfile, ContactRecord, ContactRequest, Decision, Defer, Send, Suppress
from .policy import Cap, ContactPolicy

_COUNTED = frozenset({"sent", "delivered"})
_COUNTED_OR_FAILED = _COUNTED | {"failed"}
_MAX_ROUNDS = 32  # caps and quiet hours settle in two or three rounds; this is a backstop


def _counted_times(
    history: Iterable[ContactRecord], channel: str, policy: ContactPolicy
) -> list[datetime]:
    counted = _COUNTED_OR_FAILED if channel in policy.failed_counts_toward_caps else _COUNTED
    return sorted(r.sent_at for r in history if r.channel == channel and r.status in counted)


def cap_release(times: list[datetime], at: datetime, caps: tuple[Cap, ...]) -> datetime:
    """The earliest instant >= `at` at which one more contact keeps every cap.

    A window is half-open, (t - window, t]: a contact sent exactly one window ago has left it.
    `times` is sorted; contacts after `at` are not expected (history is the past).
    """
    release = at
    for cap in caps:
        start = at - cap.window
        inside = [t for t in times if start < t <= at]
        excess = len(inside) - cap.max
        if excess >= 0:
            # The oldest `excess + 1` must leave the window before one more fits.
            release = max(release, inside[excess] + cap.window)
    return release


def _template_id(request: ContactRequest, language: str, vulnerable: bool) -> str:
    suffix = ".vulnerable" if vulnerable else ""
    return f"{request.template}.{language}{suffix}"


def _state_suppression(
    request: ContactRequest, borrower: BorrowerProfile, flags: Set[str], policy: ContactPolicy,
    vulnerable: bool,
) -> Suppress | None:
    cid = request.contact_id
    if flags:  # most loans carry none
        for flag in policy.blocking_flags:
            if flag in flags:
                return Suppress(cid, flag)
    if request.loan_closed:
        return Suppress(cid, "stale", "loan_closed")
    if request.requires_stage is not None and request.loan_stage_now != request.requires_stage:
        return Suppress(cid, "stale", f"stage_changed:{request.loan_stage_now}")
    plan = policy.stages.get(request.loan_stage_now)
    if plan is not None and not plan.automated:
        return Suppress(cid, "stage_not_automated", request.loan_stage_now)
    if request.channel in borrower.opted_out_channels:
        return Suppress(cid, "opted_out", request.channel)
    if vulnerable and request.channel in policy.vulnerable_blocked_channels:
        return Suppress(cid, f"vulnerable_no_{request.channel}")
    if not borrower.reachable_by(request.channel):
        return Suppress(cid, "no_address", request.channel)
    return None


def decide(
    request: ContactRequest,
    borrower: BorrowerProfile,
    flags: Set[str],
    history: Iterable[ContactRecord],
    now: datetime,
    policy: ContactPolicy,
) -> Decision:
    """Send now, defer until an allowed minute, or suppress with a reason."""
    vulnerable = borrower.vulnerable or not policy.vulnerable_flags.isdisjoint(flags)
    blocked = _state_suppression(request, borrower, flags, policy, vulnerable)
    if blocked is not None:
        return blocked

    tz = zone(borrower.timezone)
    deadline = request.created_at + policy.max_deferral
    if request.valid_until is not None:
        # Exclusive: the first instant of the next local day.
        deadline = min(deadline, end_of_local_day(request.valid_until, tz))
    if now > deadline:
        return Suppress(request.contact_id, "stale", "too_old")

    caps = policy.caps.get(request.channel, ())
    # an empty history counts nothing (a list: the usual case, and cheap to ask)
    times = _counted_times(history, request.channel, policy) if caps and history else []
    at = now
    constraints: list[str] = []
    binding = ""
    for _ in range(_MAX_ROUNDS):
        moved = False
        # nothing counted: every cap (a policy's max is at least 1) has room at `at`
        release = cap_release(times, at, caps) if times else at
        if release > at:
            at = ceil_minute(release)
            moved = True
            binding = "frequency_cap"
            if "frequency_cap" not in constraints:
                constraints.append("frequency_cap")
        allowed = next_allowed(at, tz, policy.quiet_hours)
        if allowed != at:
            at = allowed
            moved = True
            binding = "quiet_hours"
            if "quiet_hours" not in constraints:
                constraints.append("quiet_hours")
        if not moved or at > deadline:
            break

    if at > deadline:
        return Suppress(request.contact_id, "stale", f"deferral_beyond_limit:{binding}")
    if at == now:
        language = (
            borrower.language if borrower.language in policy.languages
            else policy.default_language
        )
        return Send(
            contact_id=request.contact_id,
            channel=request.channel,
            template_id=_template_id(request, language, vulnerable),
            language=language,
            vulnerable=vulnerable,
        )
    # The reason is the constraint that fixed `until` (the last to move it); every
    # constraint met on the way is kept in `constraints` for the contact log.
    return Defer(
        contact_id=request.contact_id,
        until=at.astimezone(UTC),
        reason=binding,  # type: ignore[arg-type]
        constraints=tuple(constraints),
    )

