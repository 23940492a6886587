"""Which event types exist: type and version -> data model, topic, direction, subject rule.

Versioning: a breaking change to a type's data registers version n+1 with an upcaster that turns
a version-n `data` dict into a version-n+1 one. The version of a message travels in the
`dataversion` extension attribute (absent = 1). Parsing always upcasts to the latest version, so
handlers only ever see one shape per type.

`from shared.events import registry` gives this module; its functions act on `DEFAULT`, the
registry of the contract. Tests that need a made-up type build their own `Registry()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from shared import topics
from shared.events import types as t

__all__ = [
    "DEFAULT",
    "Direction",
    "EventSpec",
    "Registry",
    "UnknownEventType",
    "Upcaster",
    "get",
    "latest",
    "register",
    "subject_for",
    "topic_for",
    "type_names",
]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
ModelClass = type[BaseModel]  # alias: inside EventSpec the name `type` is a field
Direction = Literal["inbound", "outbound"]


class UnknownEventType(LookupError):
    """No model is registered for this type (or this version of it)."""


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One version of one event type.

    The subject rule: `subject_value` if set (a constant such as "calendar"), else the value of
    the data field `subject_field`, else anything non-empty.
    """

    type: str
    version: int
    model: ModelClass
    topic: str
    direction: Direction
    subject_field: str | None = None
    subject_value: str | None = None

    def expected_subject(self, data: BaseModel) -> str | None:
        """The subject this data demands, or None when any subject will do."""
        if self.subject_value is not None:
            return self.subject_value
        if self.subject_field is not None:
            value = getattr(data, self.subject_field)
            return None if value is None else str(value)
        return None

    def subject_fits(self, subject: str, data: dict[str, Any]) -> bool:
        """The subject rule on plain data (decoded JSON, or a handler's dict) already checked
        natively: a subject field must hold exactly the subject as a ``str`` (an absent or
        odd one is not taken as fitting; the model then judges)."""
        if self.subject_value is not None:
            return subject == self.subject_value
        if self.subject_field is not None:
            expected = data.get(self.subject_field)
            return type(expected) is str and subject == expected
        return True


class Registry:
    """Event specs keyed by (type, version), with the upcaster chain between versions."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, int], EventSpec] = {}
        self._latest: dict[str, EventSpec] = {}
        # (type, n) -> function turning version-n data into version n+1
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(
        self,
        type: str,
        model: type[BaseModel],
        *,
        topic: str,
        direction: Direction,
        version: int = 1,
        subject_field: str | None = None,
        subject_value: str | None = None,
        upcaster: Upcaster | None = None,
    ) -> EventSpec:
        """Register `version` of `type`.

        Versions come in order, and version n > 1 needs the upcaster from n-1 to n.
        """
        current = self._latest.get(type)
        expected = 1 if current is None else current.version + 1
        if version != expected:
            raise ValueError(f"{type}: expected version {expected}, got {version}")
        if (version > 1) != (upcaster is not None):
            raise ValueError(f"{type}: an upcaster is required exactly when version > 1")
        if subject_field is not None and subject_field not in model.model_fields:
            raise ValueError(f"{type}: {model.__name__} has no field {subject_field!r}")
        spec = EventSpec(type, version, model, topic, direction, subject_field, subject_value)
        self._specs[(type, version)] = spec
        self._latest[type] = spec
        if upcaster is not None:
            self._upcasters[(type, version - 1)] = upcaster
        return spec

    def get(self, type: str, version: int | None = None) -> EventSpec:
        """The spec of `version` of `type` (the latest when None); UnknownEventType if absent."""
        spec = self._latest.get(type) if version is None else self._specs.get((type, version))
        if spec is None:
            known = "" if type not in self._latest else f" (latest is {self._latest[type].version})"
            label = type if version is None else f"{type} version {version}"
            raise UnknownEventType(f"unknown event type {label!r}{known}")
        return spec

    def latest(self, type: str) -> EventSpec:
        """The spec of the newest version of `type`."""
        return self.get(type)

    def __contains__(self, type: object) -> bool:
        return type in self._latest

    def type_names(self, direction: Direction | None = None) -> list[str]:
        """Registered type names, optionally only inbound or outbound ones."""
        return [
            name
            for name, spec in self._latest.items()
            if direction is None or spec.direction == direction
        ]

    def topic_for(self, type: str) -> str:
        """The base topic events of `type` are published to."""
        return self.get(type).topic

    def subject_for(self, type: str, data: BaseModel) -> str | None:
        """The subject `data` of `type` demands (loan id, borrower id, "calendar"...)."""
        return self.get(type).expected_subject(data)

    def upcast(
        self, type: str, version: int, data: dict[str, Any]
    ) -> tuple[EventSpec, dict[str, Any]]:
        """Bring version-`version` data of `type` to the latest version.

        Returns the latest spec and the upcast data. Raises UnknownEventType for an unknown type or
        a version we do not have (a producer ahead of us); whatever an upcaster raises on a
        malformed old payload propagates.
        """
        target = self.get(type)
        if version == target.version:
            return target, data
        self.get(type, version)  # a version from the future, or < 1, is unknown
        for step in range(version, target.version):
            data = self._upcasters[(type, step)](data)
        return target, data


DEFAULT = Registry()


def _register_contract(reg: Registry) -> None:
    inbound: list[tuple[str, type[BaseModel]]] = [
        (t.LOAN_OPENED, t.LoanOpened),
        (t.INSTALMENT_UPCOMING, t.InstalmentUpcoming),
        (t.PAYMENT_MISSED, t.PaymentMissed),
        (t.REPAYMENT_RECEIVED, t.RepaymentReceived),
        (t.REPAYMENT_REVERSED, t.RepaymentReversed),
        (t.CASE_FLAG_RAISED, t.CaseFlagRaised),
        (t.CASE_FLAG_CLEARED, t.CaseFlagCleared),
        (t.PROMISE_MADE, t.PromiseMade),
        (t.COMPLAINT_RECORDED, t.ComplaintRecorded),
        (t.LOAN_CLOSED, t.LoanClosed),
    ]
    for name, model in inbound:
        reg.register(
            name, model, topic=topics.LOAN_EVENTS, direction="inbound", subject_field="loan_id"
        )
    reg.register(
        t.BORROWER_UPDATED,
        t.BorrowerUpdated,
        topic=topics.LOAN_EVENTS,
        direction="inbound",
        subject_field="borrower_id",
    )
    reg.register(
        t.BUSINESS_DAY_CLOSED,
        t.BusinessDayClosed,
        topic=topics.CALENDAR,
        direction="inbound",
        subject_value="calendar",
    )
    outbound: list[tuple[str, type[BaseModel], str]] = [
        (t.STAGE_CHANGED, t.StageChanged, topics.COLLECTION_STAGES),
        (t.CASE_ASSIGNED, t.CaseAssigned, topics.COLLECTION_ASSIGNMENTS),
        (t.CASE_UNASSIGNED, t.CaseUnassigned, topics.COLLECTION_ASSIGNMENTS),
        (t.REPAYMENT_APPLIED, t.RepaymentApplied, topics.REPAYMENTS_APPLIED),
        (t.REPAYMENT_UNAPPLIED, t.RepaymentUnapplied, topics.REPAYMENTS_APPLIED),
        (t.PROMISE_KEPT, t.PromiseKept, topics.PROMISE_OUTCOMES),
        (t.PROMISE_BROKEN, t.PromiseBroken, topics.PROMISE_OUTCOMES),
        (t.CONTACT_ATTEMPTED, t.ContactAttempted, topics.CONTACT_OUTCOMES),
    ]
    for name, model, topic in outbound:
        reg.register(name, model, topic=topic, direction="outbound", subject_field="loan_id")
    # Keyed by collector so one collector's scorecards stay in order on one partition.
    reg.register(
        t.SCORECARD_UPDATED,
        t.ScorecardUpdated,
        topic=topics.COLLECTOR_SCORES,
        direction="outbound",
        subject_field="collector_id",
    )


_register_contract(DEFAULT)

# Module-level shortcuts on the contract registry: `registry.get("loan.opened").model`.
register = DEFAULT.register
get = DEFAULT.get
latest = DEFAULT.latest
type_names = DEFAULT.type_names
topic_for = DEFAULT.topic_for
subject_for = DEFAULT.subject_for
