"""The staging consumer: loan events and the calendar in, loan states and outbound events out.

``before_batch`` locks every loan the batch names (one SELECT ... FOR UPDATE), then reads the
policy and the business date. Handlers apply the pure domain to the in-memory states through a
:class:`Casework`; ``after_batch`` writes the loans, history rows and roster counts back.

``business_day.closed`` only moves the calendar and marks an end of day as pending (the
``eod`` worker ages the loans in chunks, in their own transactions); a date not after the
current business date changes nothing and is logged. Before the first business day is closed,
a loan is evaluated at its own business date (``opened_on`` for a new loan).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date
from enum import Enum
from functools import cache
from typing import Any, get_args

from pydantic import BaseModel

from services.staging import store
from services.staging.casework import Casework
from services.staging.domain import handlers as domain
from services.staging.domain.errors import Rejected as DomainRejected
from shared.consumer import ConsumerSpec
from shared.context import BatchContext, Rejected
from shared.events import Event
from shared.topics import CALENDAR, LOAN_EVENTS

log = logging.getLogger("qingshou.staging")
_WORK = "staging"


def _work(ctx: BatchContext) -> Casework:
    work: Casework = ctx.state[_WORK]
    return work


def _holds_enum(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return True
    return any(_holds_enum(arg) for arg in get_args(annotation))


@cache
def _enum_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of an event's data model that may hold an enum (``X | None`` included)."""
    return tuple(name for name, f in model.model_fields.items() if _holds_enum(f.annotation))


def plain(event: Event) -> dict[str, Any]:
    """The event's typed data as the plain values the domain reads (enums as their value)."""
    model: type[BaseModel] = type(event.data)
    data = event.data.__dict__.copy()
    for name in _enum_fields(model):
        value = data.get(name)
        if isinstance(value, Enum):
            data[name] = value.value
    return data


async def open_loan(ctx: BatchContext, event: Event) -> None:
    work, data = _work(ctx), plain(event)
    if data["loan_id"] in work.loans:
        raise Rejected("duplicate_loan", data["loan_id"])
    opened_on: date = data["opened_on"]
    on = work.business_date if work.business_date is not None else opened_on
    product = str(data["product"])
    try:
        await work.record(domain.open_loan(data, on, work.policies.for_product(product)))
    except DomainRejected as rej:
        raise Rejected(rej.reason, rej.detail) from rej


def _loan_handler(apply: domain.Handler) -> Callable[[BatchContext, Event], Awaitable[None]]:
    async def handle(ctx: BatchContext, event: Event) -> None:
        work, data = _work(ctx), plain(event)
        state = work.loans.get(data["loan_id"])
        if state is None:
            raise Rejected("unknown_loan", data["loan_id"])
        try:
            outcome = apply(state, data, work.date_for(state), work.policy(state))
        except DomainRejected as rej:
            raise Rejected(rej.reason, rej.detail) from rej
        await work.record(outcome)

    handle.__name__ = apply.__name__
    return handle


async def close_business_day(ctx: BatchContext, event: Event) -> None:
    work, new = _work(ctx), event.data.business_date
    cal = await store.calendar(ctx.conn, lock=True)
    if cal.business_date is not None and new <= cal.business_date:
        log.info("business day not after the current one; nothing changes",
                 extra={"business_date": new.isoformat(),
                        "current": cal.business_date.isoformat()})
        return
    # A later date supersedes an unfinished end of day: aging to it covers both.
    await store.set_calendar(ctx.conn, new, new)
    work.business_date = new


HANDLERS: dict[str, Callable[[BatchContext, Event], Awaitable[None]]] = {
    "loan.opened": open_loan,
    **{name: _loan_handler(fn) for name, fn in domain.HANDLERS.items()},
    "business_day.closed": close_business_day,
}


async def load_batch(ctx: BatchContext, events: list[Event]) -> None:
    conn = ctx.conn
    ids = [loan_id for e in events if (loan_id := getattr(e.data, "loan_id", None))]
    loans = await store.load_loans(conn, ids)
    # read after the loans are locked: a loan aged by end of day is never ahead of this date
    cal = await store.calendar(conn)
    ctx.state[_WORK] = Casework(ctx, await store.load_policy(conn), cal.business_date, loans)


async def write_batch(ctx: BatchContext) -> None:
    await _work(ctx).flush()


def consumer_spec(name: str = "staging") -> ConsumerSpec:
    return ConsumerSpec(name=name, topics=[LOAN_EVENTS, CALENDAR], handlers=HANDLERS,
                        before_batch=load_batch, after_batch=write_batch)
