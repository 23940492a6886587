"""The chaos test's checks: what Kafka, the services and the sandbox hold after the storm.

Each check returns a :class:`Check` (passed or not, what it counted, the first problems). The
inputs are read once the stack is quiet: whole topics (group-less reads), staging's and
incentives' REST APIs, the sandbox's record of what it received.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import orjson
from aiokafka.structs import ConsumerRecord

from services.staging.domain.outbound import TOPICS as STAGING_TOPICS
from shared.events import EventError, parse_event
from shared.ops.chaos_replay import Expected, ReplayEvent, plain
from shared.ops.chaos_stream import Poison, Stream
from shared.ops.dlq import DeadLetter

__all__ = ["Check", "check_contacts", "check_credits", "check_dead_letters", "check_loans",
           "check_log", "check_sandbox", "check_staging_effects"]

_NUMBER = re.compile(r"-?\d+(\.\d+)?")
SHOW = 5  # problems listed per check


@dataclass
class Check:
    name: str
    ok: bool
    counts: str
    problems: list[str] = field(default_factory=list)


def _problems(found: list[str]) -> list[str]:
    more = len(found) - SHOW
    return found[:SHOW] + ([f"... and {more} more"] if more > 0 else [])


def _json(record: ConsumerRecord) -> dict[str, Any]:
    try:
        doc = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _norm(value: Any) -> Any:
    """Numbers written as strings compare by value ("5.00" == "5.0000")."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    return value


def _first_copies(records: Iterable[ConsumerRecord]) -> tuple[list[dict[str, Any]], int]:
    """Each event id's first copy, in log order, and how many later copies were dropped."""
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    copies = 0
    for record in records:
        doc = _json(record)
        pair = (str(doc.get("source")), str(doc.get("id")))
        if pair in seen:
            copies += 1
            continue
        seen.add(pair)
        out.append(doc)
    return out, copies


def check_log(stream: Stream, loan_events: list[ConsumerRecord],
              calendar: list[ConsumerRecord]) -> tuple[Check, dict[str, list[ReplayEvent]]]:
    """Every event of the book is in Kafka, each loan's in the order sent; also returns each
    loan's events as staging received them (first copies, log order), for the replay."""
    wanted: dict[str, list[str]] = {}
    for phase in stream.rounds:
        for round_ in phase:
            for sent, _ in round_:
                wanted.setdefault(sent["subject"], []).append(sent["id"])
    got: dict[str, list[str]] = {}
    replay: dict[str, list[ReplayEvent]] = {}
    seen: set[str] = set()
    copies = 0
    for record in [*loan_events, *calendar]:
        try:
            event = parse_event(record.value or b"")
        except EventError:
            continue  # poison: checked with the dead letters
        if event.id not in stream.phase_of:
            continue  # a close or poison of known shape
        if event.id in seen:
            copies += 1
            continue
        seen.add(event.id)
        got.setdefault(event.subject, []).append(event.id)
        if event.type != "borrower.updated":
            replay.setdefault(event.subject, []).append(
                ReplayEvent(stream.phase_of[event.id], event.type, plain(event)))
    problems = []
    missing = set(stream.phase_of) - seen
    if missing:
        problems.append(f"{len(missing)} events never reached Kafka, e.g. {sorted(missing)[:3]}")
    for subject, ids in wanted.items():
        if got.get(subject, []) != [i for i in ids if i in seen]:
            problems.append(f"{subject}: events out of the order they were sent")
    counts = (f"{len(seen):,} of {stream.events:,} events in Kafka, each loan's in order; "
              f"{copies:,} re-posted copies")
    return Check("every event reached Kafka in order", not problems, counts,
                 _problems(problems)), replay


def check_loans(expected: Expected, views: Mapping[str, dict[str, Any] | None]) -> Check:
    """Staging's ``GET /v1/loans/{id}`` equals the replay's view of every loan."""
    problems = []
    for loan_id, want in sorted(expected.views.items()):
        got = views.get(loan_id)
        if got is None:
            problems.append(f"{loan_id}: staging does not know the loan")
            continue
        diff = [k for k in want if _norm(got.get(k)) != _norm(want[k])]
        if diff:
            problems.append(f"{loan_id}: " + "; ".join(
                f"{k} is {got.get(k)!r}, replay says {want[k]!r}" for k in diff[:3]))
    stages = Counter(v["stage"] for v in expected.views.values())
    counts = (f"{len(expected.views):,} loans equal to the replay (stage, DPD, arrears, "
              f"owner, history, promises); stages: "
              + ", ".join(f"{s} {n:,}" for s, n in stages.most_common()))
    return Check("loan state = replay of its events", not problems, counts, _problems(problems))


def check_staging_effects(expected: Expected,
                          topics: Mapping[str, list[ConsumerRecord]]) -> Check:
    """Staging's outbound events, each id counted once, equal the replay's, loan by loan: an
    effect applied twice would be a second event with a new id."""
    problems = []
    total = copies = 0
    for topic in sorted(set(STAGING_TOPICS.values())):
        docs, dropped = _first_copies(topics.get(topic, []))
        copies += dropped
        got: dict[str, list[dict[str, Any]]] = {}
        for doc in docs:
            got.setdefault(str(doc.get("subject")), []).append(doc)
        want = {loan: [(t, d) for t, d in out if STAGING_TOPICS[t] == topic]
                for loan, out in expected.outbound.items()}
        for loan in sorted(set(got) | {k for k, v in want.items() if v}):
            have, should = got.get(loan, []), want.get(loan, [])
            total += len(have)
            if len(have) != len(should):
                problems.append(f"{loan} on {topic}: {len(have)} events, replay has "
                                f"{len(should)}")
                continue
            for n, (doc, (type_, data)) in enumerate(zip(have, should, strict=True)):
                body = doc.get("data") or {}
                if doc.get("type") != type_ or any(
                        _norm(body.get(k)) != _norm(v) for k, v in data.items()):
                    problems.append(f"{loan} on {topic}, event {n}: {doc.get('type')} "
                                    f"{body} != replay {type_} {data}")
                    break
    counts = (f"{total:,} events on staging's four topics equal to the replay "
              f"({copies:,} at-least-once copies of the same id)")
    return Check("staging's effects once", not problems, counts, _problems(problems))


async def check_credits(expected: Expected, client: httpx.AsyncClient, incentives: str,
                        collectors: Iterable[str], periods: Iterable[str]) -> Check:
    """Each collector's credited recovery per month equals the ``to_arrears`` of the
    repayments applied (minus those un-applied) that named them."""
    problems = []
    total = Decimal(0)
    checked = 0
    for collector in sorted(set(collectors) | {c for c, _ in expected.credits}):
        for period in periods:
            want = expected.credits.get((collector, period), Decimal(0))
            r = await client.get(f"{incentives}/v1/scorecards/{collector}",
                                 params={"period": period})
            if r.status_code == 404:
                got = Decimal(0)
            elif r.status_code == 200:
                got = Decimal(r.json()["recovered"])
            else:
                problems.append(f"{collector} {period}: incentives answered {r.status_code}")
                continue
            checked += 1
            total += got
            if got != want:
                problems.append(f"{collector} {period}: recovered {got}, applied {want}")
    counts = (f"{checked:,} scorecards (collector x month), {total:,} credited = "
              f"{sum(expected.credits.values(), Decimal(0)):,} applied to arrears "
              f"({expected.applied:,} repayment.applied)")
    return Check("credits = sum of to_arrears applied", not problems, counts,
                 _problems(problems))


def check_contacts(records: list[ConsumerRecord]) -> tuple[Check, set[str]]:
    """Each contact decision is published under one event id (copies of one id are the
    relay's at-least-once); returns the ids of the contacts sent to a provider."""
    effects: dict[tuple[Any, ...], set[str]] = {}
    sent: set[str] = set()
    statuses: Counter[str] = Counter()
    for record in records:
        doc = _json(record)
        d = doc.get("data") or {}
        key = (d.get("contact_id"), d.get("status"), d.get("reason"), d.get("scheduled_for"))
        ids = effects.setdefault(key, set())
        if not ids:
            statuses[str(d.get("status"))] += 1
        ids.add(str(doc.get("id")))
        if d.get("status") == "sent":
            sent.add(str(d.get("contact_id")))
    twice = [f"contact {k[0]} {k[1]}/{k[2]} published under {len(v)} ids"
             for k, v in effects.items() if len(v) > 1]
    # and a contact is sent at most once, whatever else was decided about it
    sends = Counter(k[0] for k in effects if k[1] == "sent")
    twice += [f"contact {c} decided as sent {n} times" for c, n in sends.items() if n > 1]
    counts = (f"{len(effects):,} decisions, each under one id: "
              + ", ".join(f"{s} {n:,}" for s, n in statuses.most_common()))
    return Check("contact decisions once", not twice, counts, _problems(twice)), sent


def check_sandbox(sent: set[str], messages: list[dict[str, Any]],
                  received: dict[str, Any]) -> Check:
    """The provider got every contact the notifier sent, each contact id exactly once."""
    got = Counter(str((m.get("payload") or {}).get("contact_id")) for m in messages)
    problems = [f"contact {c} accepted {n} times" for c, n in got.items() if n > 1]
    missing = sent - set(got)
    unknown = set(got) - sent
    if missing:
        problems.append(f"{len(missing)} sent contacts never reached the provider, e.g. "
                        f"{sorted(missing)[:3]}")
    if unknown:
        problems.append(f"{len(unknown)} contacts reached the provider but were never "
                        f"decided as sent, e.g. {sorted(unknown)[:3]}")
    counts = (f"{len(got):,} contacts at the provider, each once = {len(sent):,} sent; "
              f"{received.get('resent', 0):,} re-sent after a crash and deduplicated")
    return Check("provider got each contact id once", not problems, counts, _problems(problems))


def check_dead_letters(poison: list[Poison], letters: list[DeadLetter]) -> Check:
    """The dead-letter topics hold the injected poison, from each consumer that must refuse
    it, and nothing else."""
    problems = []
    found: Counter[tuple[str, str]] = Counter()
    for letter in letters:
        match = next((p for p in poison if p.matches(letter.value)
                      and letter.original_topic.endswith(f".{p.topic}")), None)
        if match is None or letter.consumer not in match.consumers \
                or letter.reason != match.reason:
            problems.append(f"unexpected dead letter on {letter.topic}: {letter.consumer} "
                            f"{letter.reason} {letter.event_type or ''} "
                            f"{letter.event_id or (letter.value or b'')[:60]!r} "
                            f"{letter.detail[:200]}")
            continue
        found[(match.ident, letter.consumer)] += 1
    for p in poison:
        for consumer in p.consumers:
            if not found[(p.ident, consumer)]:
                problems.append(f"{p.kind} {p.ident} on {p.topic}: not dead-lettered by "
                                f"{consumer}")
    wanted = sum(len(p.consumers) for p in poison)
    copies = sum(found.values()) - len(found)
    kinds = Counter(p.kind for p in poison)
    counts = (f"{len(letters):,} dead letters = {len(poison)} poison messages "
              f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) x their "
              f"consumers ({wanted} expected, {copies} at-least-once copies)")
    return Check("DLQs hold exactly the injected poison", not problems, counts,
                 _problems(problems))
