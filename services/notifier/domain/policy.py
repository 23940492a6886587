"""The contact policy document (`GET/PUT /v1/contact-policy`): defaults, validation, parsing.

The document is plain JSON-shaped data so the API can store and return it as is;
`parse_contact_policy` turns a valid document into the frozen `ContactPolicy` that
`decide` and the triggers read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

from .model import (
    CHANNELS,
    EVENT_TRIGGERS,
    FLAGS,
    LANGUAGES,
    MANDATORY_BLOCKING_FLAGS,
    STAGES,
)

DEFAULT_CONTACT_POLICY: dict[str, Any] = {
    "version": 1,
    # No contact from `start` to `end`, local time of the borrower: allowed 08:00 <= t < 21:00.
    "quiet_hours": {"start": "21:00", "end": "08:00"},
    # Rolling windows per loan and channel: at most `max` contacts in any `window_hours`.
    "caps": {
        "voice": [{"max": 6, "window_hours": 24}, {"max": 7, "window_hours": 168}],
        "sms": [{"max": 1, "window_hours": 24}, {"max": 3, "window_hours": 168}],
        "email": [{"max": 1, "window_hours": 24}],
        "letter": [{"max": 1, "window_hours": 168}],
    },
    # A failed call attempt still rang the borrower (Reg F counts attempts); a failed
    # SMS, e-mail or letter never reached them, so it does not use up the cap.
    "failed_counts_toward_caps": ["voice"],
    # A contact is sent within this many hours of its request or not at all.
    "staleness": {"max_deferral_hours": 72},
    "blocking_flags": list(MANDATORY_BLOCKING_FLAGS),
    "vulnerable": {"blocked_channels": ["voice"], "flags": ["hardship"]},
    "languages": list(LANGUAGES),
    "default_language": "zh-CN",
    "stages": {
        "current": {"automated": True, "channels": [], "cadence_business_days": None},
        "early": {"automated": True, "channels": ["sms", "email"], "cadence_business_days": 5},
        "negotiation": {
            "automated": True, "channels": ["voice", "sms"], "cadence_business_days": 3,
        },
        "intensive": {
            "automated": True, "channels": ["voice", "letter"], "cadence_business_days": 5,
        },
        "legal": {"automated": True, "channels": ["letter"], "cadence_business_days": 10},
        "write_off": {"automated": False, "channels": [], "cadence_business_days": None},
        "special": {"automated": False, "channels": [], "cadence_business_days": None},
    },
    "triggers": {
        "early_warning": {"channels": ["sms", "email"], "stages": ["current"]},
        "promise_reminder": {"channels": ["sms"], "days_before": 1},
        "promise_thanks": {"channels": ["sms"]},
        "owner_intro": {"channels": ["sms", "email"]},
    },
}


@dataclass(frozen=True, slots=True)
class Cap:
    max: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    def is_quiet(self, wall: time) -> bool:
        if self.start > self.end:  # wraps midnight, the usual case
            return wall >= self.start or wall < self.end
        return self.start <= wall < self.end


@dataclass(frozen=True, slots=True)
class StagePlan:
    automated: bool
    channels: tuple[str, ...]
    cadence_business_days: int | None


@dataclass(frozen=True, slots=True)
class TriggerPlan:
    channels: tuple[str, ...]
    stages: tuple[str, ...] | None = None
    days_before: int | None = None


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    version: int
    quiet_hours: QuietHours
    caps: Mapping[str, tuple[Cap, ...]]
    failed_counts_toward_caps: frozenset[str]
    max_deferral: timedelta
    blocking_flags: tuple[str, ...]
    vulnerable_blocked_channels: frozenset[str]
    vulnerable_flags: frozenset[str]
    languages: tuple[str, ...]
    default_language: str
    stages: Mapping[str, StagePlan]
    triggers: Mapping[str, TriggerPlan]


class ContactPolicyError(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_TOP_LEVEL = tuple(DEFAULT_CONTACT_POLICY)


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(err: _Errors, field: str, value: Any, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        err.add(field, f"must be an integer from {low} to {high}")


def _check_keys(
    err: _Errors, field: str, value: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> bool:
    """Object with exactly the required keys (and maybe the optional ones)."""
    prefix = f"{field}." if field else ""
    if not isinstance(value, Mapping):
        err.add(field or "$", "must be an object")
        return False
    for key in required:
        if key not in value:
            err.add(f"{prefix}{key}", "is required")
    for key in value:
        if key not in required and key not in optional:
            err.add(f"{prefix}{key}", "is not a known field")
    return True


def _check_names(
    err: _Errors, field: str, value: Any, known: tuple[str, ...], *, non_empty: bool = False
) -> None:
    if not isinstance(value, list):
        err.add(field, "must be a list")
        return
    if non_empty and not value:
        err.add(field, "must not be empty")
    seen: set[str] = set()
    for i, item in enumerate(value):
        if item not in known:
            err.add(f"{field}[{i}]", f"must be one of {', '.join(known)}")
        elif item in seen:
            err.add(f"{field}[{i}]", "is repeated")
        else:
            seen.add(item)


def _check_quiet_hours(err: _Errors, doc: Any) -> None:
    if not _check_keys(err, "quiet_hours", doc, ("start", "end")):
        return
    for key in ("start", "end"):
        if key in doc and (not isinstance(doc[key], str) or not _HHMM.match(doc[key])):
            err.add(f"quiet_hours.{key}", "must be a local time HH:MM (00:00-23:59)")
    if doc.get("start") == doc.get("end"):
        err.add("quiet_hours.end", "must differ from start")


def _check_caps(err: _Errors, doc: Any) -> None:
    if not _check_keys(err, "caps", doc, CHANNELS):
        return
    for channel in CHANNELS:
        caps = doc.get(channel)
        field = f"caps.{channel}"
        if caps is None:
            continue
        if not isinstance(caps, list) or not caps:
            err.add(field, "must be a non-empty list (an uncapped channel is refused)")
            continue
        for i, cap in enumerate(caps):
            if _check_keys(err, f"{field}[{i}]", cap, ("max", "window_hours")):
                if "max" in cap:
                    _check_int(err, f"{field}[{i}].max", cap["max"], 1, 1000)
                if "window_hours" in cap:
                    _check_int(err, f"{field}[{i}].window_hours", cap["window_hours"], 1, 8760)


def _check_stages(err: _Errors, doc: Any) -> None:
    if not _check_keys(err, "stages", doc, STAGES):
        return
    for stage in STAGES:
        plan = doc.get(stage)
        field = f"stages.{stage}"
        if plan is None or not _check_keys(
            err, field, plan, ("automated", "channels", "cadence_business_days")
        ):
            continue
        if "automated" in plan and not isinstance(plan["automated"], bool):
            err.add(f"{field}.automated", "must be true or false")
        if "channels" in plan:
            _check_names(err, f"{field}.channels", plan["channels"], CHANNELS)
        cadence = plan.get("cadence_business_days")
        if cadence is not None:
            _check_int(err, f"{field}.cadence_business_days", cadence, 1, 250)
        if plan.get("automated") is False and (plan.get("channels") or cadence is not None):
            err.add(field, "a stage that is not automated has no channels and no cadence")


def _check_triggers(err: _Errors, doc: Any) -> None:
    if not _check_keys(err, "triggers", doc, EVENT_TRIGGERS):
        return
    optional = {"early_warning": ("stages",), "promise_reminder": ("days_before",)}
    for trigger in EVENT_TRIGGERS:
        plan = doc.get(trigger)
        field = f"triggers.{trigger}"
        if plan is None or not _check_keys(
            err, field, plan, ("channels", *optional.get(trigger, ()))
        ):
            continue
        if "channels" in plan:
            _check_names(err, f"{field}.channels", plan["channels"], CHANNELS)
        if "stages" in plan:
            _check_names(err, f"{field}.stages", plan["stages"], STAGES, non_empty=True)
        if "days_before" in plan:
            _check_int(err, f"{field}.days_before", plan["days_before"], 1, 14)


def _check_protections(err: _Errors, doc: Mapping[str, Any]) -> None:
    if "failed_counts_toward_caps" in doc:
        _check_names(err, "failed_counts_toward_caps", doc["failed_counts_toward_caps"], CHANNELS)
    staleness = doc.get("staleness")
    if staleness is not None and _check_keys(err, "staleness", staleness, ("max_deferral_hours",)):
        if "max_deferral_hours" in staleness:
            _check_int(err, "staleness.max_deferral_hours", staleness["max_deferral_hours"], 1, 720)
    flags = doc.get("blocking_flags")
    if flags is not None:
        _check_names(err, "blocking_flags", flags, FLAGS)
        if isinstance(flags, list):
            missing = [f for f in MANDATORY_BLOCKING_FLAGS if f not in flags]
            if missing:
                err.add("blocking_flags", f"must include {', '.join(missing)}")
    vulnerable = doc.get("vulnerable")
    if vulnerable is not None and _check_keys(
        err, "vulnerable", vulnerable, ("blocked_channels", "flags")
    ):
        blocked = vulnerable.get("blocked_channels")
        if blocked is not None:
            _check_names(err, "vulnerable.blocked_channels", blocked, CHANNELS)
            if isinstance(blocked, list) and "voice" not in blocked:
                err.add("vulnerable.blocked_channels", "must include voice")
        if "flags" in vulnerable:
            _check_names(err, "vulnerable.flags", vulnerable["flags"], FLAGS)


def validate_contact_policy(doc: Any) -> list[dict[str, str]]:
    """Every problem of a policy document, each as {"field": dotted path, "message": ...}."""
    err = _Errors()
    if not _check_keys(err, "", doc, _TOP_LEVEL):
        return err.items
    if "version" in doc:
        _check_int(err, "version", doc["version"], 1, 2**31 - 1)
    if "quiet_hours" in doc:
        _check_quiet_hours(err, doc["quiet_hours"])
    if "caps" in doc:
        _check_caps(err, doc["caps"])
    _check_protections(err, doc)
    languages = doc.get("languages")
    if languages is not None:
        _check_names(err, "languages", languages, LANGUAGES, non_empty=True)
    if "default_language" in doc and (
        not isinstance(languages, list) or doc["default_language"] not in languages
    ):
        err.add("default_language", "must be one of languages")
    if "stages" in doc:
        _check_stages(err, doc["stages"])
    if "triggers" in doc:
        _check_triggers(err, doc["triggers"])
    return err.items


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def parse_contact_policy(doc: Mapping[str, Any]) -> ContactPolicy:
    """A valid document as a `ContactPolicy`; raises `ContactPolicyError` otherwise."""
    errors = validate_contact_policy(doc)
    if errors:
        raise ContactPolicyError(errors)
    stages = {
        name: StagePlan(
            automated=plan["automated"],
            channels=tuple(plan["channels"]),
            cadence_business_days=plan["cadence_business_days"],
        )
        for name, plan in doc["stages"].items()
    }
    triggers = {
        name: TriggerPlan(
            channels=tuple(plan["channels"]),
            stages=tuple(plan["stages"]) if "stages" in plan else None,
            days_before=plan.get("days_before"),
        )
        for name, plan in doc["triggers"].items()
    }
    # Blocking flags keep the mandatory order first so the suppression reason is stable.
    extra_flags = [f for f in doc["blocking_flags"] if f not in MANDATORY_BLOCKING_FLAGS]
    return ContactPolicy(
        version=doc["version"],
        quiet_hours=QuietHours(
            start=_hhmm(doc["quiet_hours"]["start"]), end=_hhmm(doc["quiet_hours"]["end"])
        ),
        caps={
            channel: tuple(
                Cap(max=c["max"], window=timedelta(hours=c["window_hours"])) for c in caps
            )
            for channel, caps in doc["caps"].items()
        },
        failed_counts_toward_caps=frozenset(doc["failed_counts_toward_caps"]),
        max_deferral=timedelta(hours=doc["staleness"]["max_deferral_hours"]),
        blocking_flags=(*MANDATORY_BLOCKING_FLAGS, *extra_flags),
        vulnerable_blocked_channels=frozenset(doc["vulnerable"]["blocked_channels"]),
        vulnerable_flags=frozenset(doc["vulnerable"]["flags"]),
        languages=tuple(doc["languages"]),
        default_language=doc["default_language"],
        stages=stages,
        triggers=triggers,
    )


DEFAULT_POLICY: ContactPolicy = parse_contact_policy(DEFAULT_CONTACT_POLICY)
