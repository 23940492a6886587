"""One unit of work on loans: apply domain outcomes, resolve owners, write everything back.

The consumer (per batch), the end-of-day worker (per chunk) and the API (collector
deactivation) all change loans the same way: they hand each domain :class:`Outcome` to
:meth:`Casework.record`, which keeps the new state, queues its events on the outbox (mapped to
the shared outbound models) and resolves an :class:`AssignmentRequest` against the roster, then
:meth:`Casework.flush` writes the changed loans, the new stage-history rows, the portfolio
moves and the roster's open-case counts with one statement each. End of day's shortcut
(``domain.shortcut``) goes through :meth:`Casework.record_plain` instead, for loans it writes
without their documents.

Decisions (adapter mapping of the domain's events to the shared models):

- The domain's pseudo-stage ``closed`` is not a collection stage of the contract: events of a
  closed loan say ``current`` (``stage.changed`` with ``reason: closed``; the case.unassigned
  and any later claw-back carry ``stage: current``).
- The domain's extra fields (``reason``/``instalments`` on repayments, ``business_date`` on
  promise outcomes) are not part of the shared models and are dropped.
- A case owned by a relationship manager has no team in the domain; the events name the
  stage's fallback team (``negotiation`` by default), or ``relationship_manager`` when the
  stage has none. A relationship manager who is in the roster and inactive is skipped: the case
  goes to the fallback team.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date
from typing import Any

from services.staging import eodstore, portfolio, store
from services.staging.domain.assignment import (
    AssignmentRequest,
    CollectorLoad,
    resolve_assignment,
)
from services.staging.domain.handlers import Outcome, apply_assignment
from services.staging.domain.loan import CLOSED_STAGE, LoanState, Owner, StageChange
from services.staging.domain.outbound import TOPICS, Emitted
from services.staging.domain.policy import Policy, PolicySet
from services.staging.domain.shortcut import PlainStep, assigned, patch
from shared.context import BatchContext

log = logging.getLogger("qingshou.staging")

_DROP = {
    "repayment.applied": ("reason", "instalments"),
    "repayment.unapplied": ("reason", "instalments"),
    "promise.kept": ("business_date",),
    "promise.broken": ("business_date",),
}
RM_TEAM = "relationship_manager"
_ASSIGNMENTS = ("case.assigned", "case.unassigned")
_STAGE_FIELDS = {  # where each outbound event names a stage (the domain's may be "closed")
    "stage.changed": ("from_stage", "to_stage"),
    "case.assigned": ("stage",), "case.unassigned": ("stage",),
    "repayment.applied": ("stage",), "repayment.unapplied": ("stage",),
    "promise.kept": (), "promise.broken": (),
}
_NOBODY = Owner()
_NO_EVENTS: tuple[Emitted, ...] = ()


class Casework:
    def __init__(self, ctx: BatchContext, policies: PolicySet, business_date: date | None,
                 loans: dict[str, LoanState]):
        self.ctx = ctx
        self.policies = policies
        self.business_date = business_date
        self.loans = dict(loans)
        self.original = dict(loans)
        self.changed: set[str] = set()
        self.deltas: dict[str, int] = {}
        self.roster: dict[str, store.Collector] | None = None
        self.plain: list[tuple[PlainStep, Owner, dict[str, Any]]] = []  # end of day's shortcut

    def policy(self, state: LoanState) -> Policy:
        return self.policies.for_product(state.product)

    def date_for(self, state: LoanState) -> date:
        """The date a loan is evaluated at: the business date, never before its own."""
        if self.business_date is None or self.business_date < state.business_date:
            return state.business_date
        return self.business_date

    async def record(self, outcome: Outcome) -> LoanState:
        """Keep ``outcome``'s state, queue its events, resolve its owner request."""
        state = outcome.state
        before = self.loans.get(state.loan_id)
        self._owner_moved(before, state)
        self._keep(state)
        for emitted in outcome.events:
            self.publish(state, emitted)
        if outcome.assignment is not None:
            state = await self.assign(state, outcome.assignment)
        return state

    async def assign(self, state: LoanState, request: AssignmentRequest) -> LoanState:
        collector_id, team = await self.choose_owner(request)
        outcome = apply_assignment(state, collector_id, team, self.policy(state))
        self._owner_moved(state, outcome.state)
        self._keep(outcome.state)
        for emitted in outcome.events:
            self.publish(outcome.state, emitted)
        return outcome.state

    async def choose_owner(self, request: AssignmentRequest) -> tuple[str | None, str | None]:
        """``(collector_id, team)`` for a request, against the roster as this batch left it."""
        roster = await self.lock_roster()
        rm = request.relationship_manager_id
        if request.owner_kind == "relationship_manager" and rm in roster and \
                not roster[rm].active:
            request = replace(request, owner_kind="team")
        # lazily: a relationship manager's case never reads them, a team's only its members
        loads = (CollectorLoad(c.collector_id, c.team, c.capacity, c.active, c.open_cases)
                 for c in roster.values() if c.team == request.team)
        return resolve_assignment(request, loads)

    async def record_plain(self, step: PlainStep, doc: dict[str, Any]) -> None:
        """Keep end of day's shortcut for one loan (``domain.shortcut``) and its document: the
        owner resolved like any other, the events queued; :meth:`flush` writes it."""
        loan = step.loan
        owner, events = _NOBODY, _NO_EVENTS
        if step.assignment is not None:
            owner, events = assigned(step, *await self.choose_owner(step.assignment))
        self._move_case(None, owner.collector_id)
        for emitted in step.events:
            self._emit(loan.loan_id, loan.product, step.change.to_stage, emitted)
        for emitted in events:
            self._emit(loan.loan_id, loan.product, step.change.to_stage, emitted)
        self.plain.append((step, owner, patch(doc, step, owner)))

    async def lock_roster(self) -> dict[str, store.Collector]:
        if self.roster is None:
            self.roster = await store.lock_roster(self.ctx.conn)
            for collector_id, delta in self.deltas.items():
                if collector_id in self.roster:
                    self.roster[collector_id].open_cases += delta
        return self.roster

    def _owner_moved(self, before: LoanState | None, after: LoanState) -> None:
        old = before.owner.collector_id if before is not None else None
        self._move_case(old, after.owner.collector_id)

    def _move_case(self, old: str | None, new: str | None) -> None:
        if old == new:
            return
        for collector_id, step in ((old, -1), (new, 1)):
            if collector_id is None:
                continue
            self.deltas[collector_id] = self.deltas.get(collector_id, 0) + step
            if self.roster is not None and collector_id in self.roster:
                self.roster[collector_id].open_cases += step

    def _keep(self, state: LoanState) -> None:
        self.loans[state.loan_id] = state
        self.changed.add(state.loan_id)

    def publish(self, state: LoanState, emitted: Emitted) -> None:
        self._emit(state.loan_id, state.product, state.stage, emitted)

    def _emit(self, loan_id: str, product: str, stage: str, emitted: Emitted) -> None:
        data, kind = emitted.data, emitted.type
        drop = _DROP.get(kind)
        closed = False
        for name in _STAGE_FIELDS[kind]:
            closed = closed or data[name] == CLOSED_STAGE
        teamless = kind in _ASSIGNMENTS and data["team"] is None
        if drop or closed or teamless:  # a copy: the domain's event stays as it was
            data = dict(data)
            for name in drop or ():
                data.pop(name, None)
            for name in _STAGE_FIELDS[kind]:
                if data[name] == CLOSED_STAGE:
                    data[name] = "current"
            if teamless:
                data["team"] = self._fallback_team(product, stage)
        self.ctx.emit(TOPICS[kind], kind, loan_id, data)

    def _fallback_team(self, product: str, stage: str) -> str:
        if stage == CLOSED_STAGE:
            return RM_TEAM
        return self.policies.for_product(product).stage(stage).team or RM_TEAM

    async def flush(self) -> int:
        """Write what changed; returns the number of loans written."""
        conn = self.ctx.conn
        loans = [self.loans[k] for k in sorted(self.changed)]
        history: list[tuple[str, str, StageChange]] = []
        for state in loans:
            old = self.original.get(state.loan_id)
            known = len(old.history) if old is not None else 0
            history.extend((state.loan_id, state.product, h) for h in state.history[known:])
        history.extend((s.loan.loan_id, s.loan.product, s.change) for s, _, _ in self.plain)
        await store.save_loans(conn, loans)
        await eodstore.apply_plain_steps(conn, self.plain)
        await store.append_history(conn, history)
        moves = portfolio.moves_of(
            ((self.original.get(s.loan_id), s) for s in loans),
            ((s.loan.product, s.change.from_stage, s.change.to_stage, s.loan.arrears)
             for s, _, _ in self.plain))
        await portfolio.add_moves(conn, moves)
        if any(self.deltas.values()):
            await self.lock_roster()  # lock before updating, in the one lock order
            await store.add_open_cases(conn, self.deltas)
        return len(loans) + len(self.plain)
