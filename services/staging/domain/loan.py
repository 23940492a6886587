"""The loan aggregate: everything staging knows about one loan, serialisable as one document.

The handlers that change it live in ``handlers``; this module only holds the state and its
(de)serialisation, ``to_dict`` giving JSON-ready values (Decimal as string, dates ISO).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal
from typing import Any

from services.staging.domain.flags import Flags
from services.staging.domain.ledger import Ledger
from services.staging.domain.promises import OPEN, Promise
from services.staging.domain.values import day, from_iso, iso
from shared.frozen import quick_init

OPEN_STATUS, CLOSED_STATUS = "open", "closed"
CLOSED_STAGE = "closed"  # pseudo-stage of a closed loan, outside every policy


@quick_init
@dataclass(frozen=True)
class StageChange:
    from_stage: str
    to_stage: str
    dpd: int
    reason: str
    business_date: date

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.from_stage, "to": self.to_stage, "dpd": self.dpd,
                "reason": self.reason, "business_date": iso(self.business_date)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageChange:
        return cls(d["from"], d["to"], d["dpd"], d["reason"],
                   day(d["business_date"]))


@quick_init
@dataclass(frozen=True)
class Owner:
    collector_id: str | None = None
    team: str | None = None


@quick_init
@dataclass(frozen=True)
class OwnerPeriod:
    """From ``since`` (inclusive) the case belonged to ``collector_id`` (None: nobody)."""

    since: date
    collector_id: str | None


@quick_init
@dataclass(frozen=True)
class LoanState:
    loan_id: str
    borrower_id: str
    product: str
    currency: str
    principal: Decimal
    opened_on: date
    business_date: date  # the business date the loan has been evaluated at
    relationship_manager_id: str | None = None
    branch_id: str | None = None
    status: str = OPEN_STATUS
    ledger: Ledger = field(default_factory=lambda: Ledger("XXX"))
    flags: Flags = field(default_factory=Flags)
    stage: str = "current"
    dpd: int = 0
    history: tuple[StageChange, ...] = ()
    owner: Owner = field(default_factory=Owner)
    owner_history: tuple[OwnerPeriod, ...] = ()
    promises: tuple[Promise, ...] = ()
    # For a surviving payment that moved the loan down: the stage it found on arrival, the
    # floor its reversal restores (see delinquency).
    stage_at_receipt: Mapping[str, str] = field(default_factory=dict)
    # For such a payment, the collector who owned the case when it arrived: its reversal
    # gives the case back to them if they still fit (see assignment).
    owner_at_receipt: Mapping[str, str] = field(default_factory=dict)
    # Who each payment's repayment.applied credited: its un-application names the same
    # collector even when the owner changed later that day (a cure unassigns at once).
    credited: Mapping[str, str | None] = field(default_factory=dict)
    # While a special flag is in force: the sticky stage the loan would hold had the special
    # flags never been raised, restored when they are all cleared (see delinquency, rule 1).
    stage_before_special: str | None = None
    next_seq: int = 1
    policy_version: int | None = None
    next_transition_date: date | None = None

    @property
    def arrears(self) -> Decimal:
        return self.ledger.arrears

    @property
    def oldest_unpaid_due_date(self) -> date | None:
        return self.ledger.oldest_unpaid_due_date

    @property
    def open_promises(self) -> tuple[Promise, ...]:
        return tuple(p for p in self.promises if p.status == OPEN)

    def credited_to(self, payment_id: str, value_date: date) -> str | None:
        """The collector a payment's application credits (or credited, once applied)."""
        if payment_id in self.credited:
            return self.credited[payment_id]
        return self.owner_on(value_date)

    def owner_on(self, day: date) -> str | None:
        """The collector owning the case on ``day`` (the last change of that day wins)."""
        owner = None
        for period in self.owner_history:
            if period.since > day:
                break
            owner = period.collector_id
        return owner

    def evolve(self, **changes: Any) -> LoanState:
        """A copy with ``changes``: ``dataclasses.replace`` without re-running ``__init__``.

        Handlers update the state several times per event and end of day once per aged loan;
        ``replace`` rebuilds all 25 fields through ``__init__`` each time, which was a fifth of
        the CPU of aging a loan. Field names are still checked (an unknown one is a TypeError,
        as with ``replace``); there is no ``__post_init__`` to re-run."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"LoanState has no field {sorted(unknown)}")
        values = self.__dict__.copy()  # frozen: fields live in the instance dict, as __init__
        values.update(changes)  # puts them
        new = object.__new__(LoanState)
        object.__setattr__(new, "__dict__", values)
        return new

    def to_dict(self) -> dict[str, Any]:
        """The stored document; ``stage_before_special`` only when set (a loan in ``special``
        from a sticky stage), so every other loan's document is as it was before the field."""
        doc: dict[str, Any] = {
            "loan_id": self.loan_id, "borrower_id": self.borrower_id, "product": self.product,
            "currency": self.currency, "principal": str(self.principal),
            "opened_on": iso(self.opened_on), "business_date": iso(self.business_date),
            "relationship_manager_id": self.relationship_manager_id,
            "branch_id": self.branch_id, "status": self.status,
            "ledger": self.ledger.to_dict(), "flags": self.flags.to_dict(),
            "stage": self.stage, "dpd": self.dpd,
            "history": [h.to_dict() for h in self.history],
            "owner": {"collector_id": self.owner.collector_id, "team": self.owner.team},
            "owner_history": [[iso(p.since), p.collector_id] for p in self.owner_history],
            "promises": [p.to_dict() for p in self.promises],
            "stage_at_receipt": dict(self.stage_at_receipt),
            "owner_at_receipt": dict(self.owner_at_receipt),
            "credited": dict(self.credited),
            "next_seq": self.next_seq, "policy_version": self.policy_version,
            "next_transition_date": iso(self.next_transition_date),
        }
        if self.stage_before_special is not None:
            doc["stage_before_special"] = self.stage_before_special
        return doc

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LoanState:
        return cls(
            loan_id=d["loan_id"], borrower_id=d["borrower_id"], product=d["product"],
            currency=d["currency"], principal=Decimal(d["principal"]),
            opened_on=day(d["opened_on"]),
            business_date=day(d["business_date"]),
            relationship_manager_id=d.get("relationship_manager_id"),
            branch_id=d.get("branch_id"), status=d["status"],
            ledger=Ledger.from_dict(d["ledger"]), flags=Flags.from_dict(d["flags"]),
            stage=d["stage"], dpd=d["dpd"],
            history=tuple(StageChange.from_dict(h) for h in d["history"]),
            owner=Owner(d["owner"]["collector_id"], d["owner"]["team"]),
            owner_history=tuple(OwnerPeriod(day(s), c)
                                for s, c in d["owner_history"]),
            promises=tuple(Promise.from_dict(p) for p in d["promises"]),
            stage_at_receipt=dict(d.get("stage_at_receipt", {})),
            owner_at_receipt=dict(d.get("owner_at_receipt", {})),
            credited=dict(d.get("credited", {})),
            stage_before_special=d.get("stage_before_special"),
            next_seq=d["next_seq"], policy_version=d.get("policy_version"),
            next_transition_date=from_iso(d.get("next_transition_date")),
        )


_FIELDS = frozenset(f.name for f in fields(LoanState))
