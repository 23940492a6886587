"""The chaos test: a book of loans through the whole stack while every service is SIGKILLed.

``run_chaos`` starts its own stack (sandbox and the four services, on free loopback ports, with
a fresh topic prefix and schemas; :mod:`shared.ops.chaos_stack`), registers one collector per
team, and plays the stream of :mod:`shared.ops.chaos_stream` phase by phase: rounds of events
through ingest's batch endpoint (and a share straight to Kafka), poison straight to Kafka,
``business_day.closed`` after staging has consumed the phase, then the next phase once
staging's end of day is recorded. Meanwhile each of ingest, staging, notifier and incentives
is killed with SIGKILL ``kills`` times, each at a random moment (a random round, plus up to a
second), and restarted. The sender re-posts every batch it did not get a 202 for (connection
refused or reset while ingest is down, 503 while it reconnects); the copies that had landed
are duplicates, which the inboxes drop.

Then it waits until the stack is quiet (every consumer group has committed every message of
its topics and no topic has grown for a few seconds) and checks (:mod:`shared.ops.chaos_checks`):
every event reached Kafka in order; every loan's state from staging's API equals a pure replay
of its events with staging's domain (:mod:`shared.ops.chaos_replay`); staging's outbound
events equal the replay's, each effect under one event id; incentives' credited recovery per
collector and month equals the ``to_arrears`` applied; each contact decision is published
under one id and the provider sandbox accepted each sent contact exactly once; the dead-letter
topics hold exactly the injected poison. ``report`` renders the result as Markdown.

The small variant runs in ``make test`` (``tests/e2e/test_crash_recovery.py``), the full one is
``qingshou bench chaos --events 100000 --kills 3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import check_identifier
from shared.kafka import Producer, make_producer
from shared.ops.chaos_checks import (
    Check,
    check_contacts,
    check_credits,
    check_dead_letters,
    check_loans,
    check_log,
    check_sandbox,
    check_staging_effects,
)
from shared.ops.chaos_kafka import KafkaProbe
from shared.ops.chaos_replay import replay
from shared.ops.chaos_stack import SERVICES, Stack, stack_for
from shared.ops.chaos_stream import Stream, StreamConfig, build_stream
from shared.ops.dlq import DeadLetter
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS, CALENDAR, LOAN_EVENTS, TopicNames

__all__ = ["ChaosConfig", "ChaosError", "ChaosResult", "bench_chaos", "report", "run_chaos"]

log = logging.getLogger("qingshou.chaos")

# what each service consumes (PRODUCT.md section 2): its group must have committed all of it
CONSUMES = {
    "staging": (LOAN_EVENTS, CALENDAR),
    "notifier": ("collection-stages", "collection-assignments", "promise-outcomes",
                 LOAN_EVENTS, CALENDAR),
    "incentives": ("collection-assignments", "repayments-applied", "promise-outcomes",
                   "collection-stages", LOAN_EVENTS),
}
BATCH = 1000  # ingest's largest batch
RETRYABLE = (429, 500, 502, 503, 504)


class ChaosError(RuntimeError):
    """The run could not go on (a service never came back, ingest refused an event)."""


@dataclass(frozen=True)
class ChaosConfig:
    loans: int
    events_per_loan: int
    kills: int
    kafka: str
    database_url: str
    logs: Path
    seed: int = 7
    phases: int = 12
    phase_days: int = 10
    partitions: int = 3
    timeout: float = 3600.0  # the whole run, stack start and checks included
    wait: float = 900.0  # any one wait (a barrier, an end of day, quiescence)
    quiet: float = 6.0  # seconds without a new message anywhere that count as quiet
    api_key: str = "qs-dev-admin"
    progress: Callable[[str], None] | None = None  # told of each phase, kill and step
    keep: bool = False  # keep the topics and schemas of a run that passed

    def stream(self) -> StreamConfig:
        return StreamConfig(loans=self.loans, events_per_loan=self.events_per_loan,
                            seed=self.seed, phases=self.phases, phase_days=self.phase_days,
                            tag=f"S{self.seed}-")


@dataclass
class Kill:
    service: str
    round_no: int
    phase: int
    at: float  # seconds since the stream started
    restart_s: float = 0.0
    old_pid: int = 0
    new_pid: int = 0
    exit_code: int | None = None  # -9: the process died of SIGKILL


@dataclass
class ChaosResult:
    config: ChaosConfig
    events: int = 0
    loans: int = 0
    closes: int = 0
    poison: int = 0
    via_ingest: int = 0
    direct: int = 0
    reposts: int = 0
    kills: list[Kill] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    logs: Path | None = None
    prefix: str = ""  # the stack's topic prefix (schemas: e_<id>_<service>)
    removed: bool = False  # its topics and schemas were deleted after the run

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)


class _Sender:
    """Posts rounds to ingest (re-posting what did not get a 202) and produces the direct
    share and the poison straight to Kafka."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient, producer: Producer,
                 topics: TopicNames, wait: float):
        self.url = stack.url("ingest", "/v1/events/batch")
        self.client = client
        self.producer = producer
        self.topics = topics
        self.wait = wait
        self.via_ingest = self.direct = self.reposts = 0
        self._slots = asyncio.Semaphore(2)

    async def send(self, items: list[tuple[dict[str, Any], bool]]) -> None:
        ingest = [e for e, direct in items if not direct]
        direct = [e for e, d in items if d]
        jobs = [self._post(ingest[i:i + BATCH]) for i in range(0, len(ingest), BATCH)]
        await asyncio.gather(self._produce(direct), *jobs)

    def topic(self, event: dict[str, Any]) -> str:
        return self.topics.name(CALENDAR if event["type"] == "business_day.closed"
                                else LOAN_EVENTS)

    async def _post(self, events: list[dict[str, Any]]) -> None:
        body = orjson.dumps(events)
        deadline = time.monotonic() + self.wait
        async with self._slots:
            while True:
                try:
                    r = await self.client.post(self.url, content=body, headers={
                        "Content-Type": "application/cloudevents-batch+json"})
                    if r.status_code == 202:
                        self.via_ingest += len(events)
                        return
                    if r.status_code not in RETRYABLE:
                        raise ChaosError(f"ingest answered {r.status_code}: {r.text[:500]}")
                    pause = float(r.headers.get("Retry-After", "0.5"))
                except httpx.TransportError:  # ingest down, or killed mid-request
                    pause = 0.3
                if time.monotonic() > deadline:
                    raise ChaosError(f"ingest did not take a batch in {self.wait}s")
                self.reposts += 1
                await asyncio.sleep(min(pause, 1.0))

    async def _produce(self, events: list[dict[str, Any]]) -> None:
        if events:
            await self.produce([(self.topic(e), e["subject"].encode(), orjson.dumps(e))
                                for e in events])
            self.direct += len(events)

    async def produce(self, messages: list[tuple[str, bytes, bytes]]) -> None:
        """Produce (topic, key, value) messages and wait for every acknowledgement."""
        for attempt in range(10):
            try:
                futures = [await self.producer.send(t, value=v, key=k) for t, k, v in messages]
                await asyncio.gather(*futures)
                return
            except KafkaError:
                if attempt == 9:
                    raise
                await asyncio.sleep(1.0)


class _Run:
    def __init__(self, cfg: ChaosConfig, stream: Stream, stack: Stack, result: ChaosResult):
        self.cfg, self.stream, self.stack, self.result = cfg, stream, stack, result
        self.topics = TopicNames(stack.prefix)
        self.rng = random.Random(cfg.seed * 7919 + 1)
        self.round_no = -1
        self.phase = 0
        self._progress = asyncio.Condition()
        self.started = time.monotonic()
        self.client = httpx.AsyncClient(timeout=30, headers={
            "Authorization": f"Bearer {cfg.api_key}"})
        self.probe = KafkaProbe(cfg.kafka)
        self.producer = make_producer(cfg.kafka, client_id="qingshou-chaos")
        self.sender = _Sender(stack, self.client, self.producer, self.topics, cfg.wait)

    def say(self, text: str) -> None:
        if self.cfg.progress is not None:
            self.cfg.progress(f"[{time.monotonic() - self.started:7.1f} s] {text}")

    def group(self, service: str) -> str:
        return ServiceSettings(service=service, topic_prefix=self.stack.prefix).group_id

    async def until(self, what: str, check: Callable[[], Awaitable[bool]],
                    timeout: float | None = None) -> None:
        """Poll ``check`` until it is true; a service being down counts as "not yet"."""
        deadline = time.monotonic() + (timeout or self.cfg.wait)
        while True:
            with contextlib.suppress(httpx.HTTPError, KafkaError, KeyError, ValueError):
                if await check():
                    return
            if time.monotonic() > deadline:
                raise ChaosError(f"{what}: not reached in {timeout or self.cfg.wait}s")
            await asyncio.sleep(0.2)

    # -- the storm -------------------------------------------------------------------------

    async def reached(self, round_no: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self.round_no >= round_no)

    async def killer(self, service: str, rounds: list[int]) -> None:
        for round_no in rounds:
            await self.reached(round_no)
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))
            # the round in flight now: later than planned if the last restart took long
            kill = Kill(service, self.round_no, self.phase, time.monotonic() - self.started,
                        old_pid=self.stack.pid(service))
            await asyncio.to_thread(self.stack.kill9, service)
            kill.exit_code = self.stack.procs[service].returncode
            log.info("killed", extra={"service": service, "round": round_no})
            await asyncio.to_thread(self.stack.start, service)
            kill.restart_s = time.monotonic() - self.started - kill.at
            kill.new_pid = self.stack.pid(service)
            self.say(f"{service} killed in round {round_no} (phase {kill.phase}), back after "
                     f"{kill.restart_s:.1f} s")
            self.result.kills.append(kill)

    def kill_plan(self) -> dict[str, list[int]]:
        """The round after which each kill comes: the stream is cut into as many slots as
        there are kills, each kill gets a slot (services shuffled) and a random round in it,
        so the kills are spread over the whole stream instead of piling up."""
        kills = [s for s in SERVICES for _ in range(self.cfg.kills)]
        self.rng.shuffle(kills)
        first, last = 1, max(2, self.stream.round_count - 1)
        plan: dict[str, list[int]] = {s: [] for s in SERVICES}
        for n, service in enumerate(kills):
            lo = first + (last - first) * n // len(kills)
            hi = max(lo, first + (last - first) * (n + 1) // len(kills) - 1)
            plan[service].append(self.rng.randint(lo, hi))
        return plan

    async def close(self, day: date, first: bool = False) -> None:
        event = {"specversion": "1.0", "id": f"close-{self.stack.prefix}-{day.isoformat()}",
                 "source": "urn:qingshou:chaos:calendar", "type": "business_day.closed",
                 "time": f"{day.isoformat()}T23:00:00+08:00", "subject": "calendar",
                 "data": {"business_date": day.isoformat()}}
        await self.sender.send([(event, False)])

        async def recorded() -> bool:
            if not first:  # the end of day's portfolio snapshot is there
                r = await self.client.get(self.stack.url("staging", "/v1/portfolio/history"),
                                          params={"limit": 366})
                return r.status_code == 200 and any(
                    d["business_date"] == day.isoformat() for d in r.json()["items"])
            # no loan yet, so no snapshot: the calendar moved
            r = await self.client.get(self.stack.url("staging", "/v1/portfolio"))
            return r.status_code == 200 and r.json()["business_date"] == day.isoformat()

        await self.until(f"staging's end of day {day}", recorded)

    async def staging_caught_up(self) -> None:
        group, topics = self.group("staging"), [self.topics.name(LOAN_EVENTS)]

        async def done() -> bool:
            return await self.probe.lag(group, topics) == 0

        await self.until("staging consumed the phase", done)

    async def play(self) -> None:
        poison: dict[int, list[tuple[str, bytes, bytes]]] = {}
        for p in self.stream.poison:
            poison.setdefault(p.round_no, []).append((self.topics.name(p.topic), p.key,
                                                      p.value))
        await self.close(self.stream.closes[0], first=True)
        for phase, rounds in enumerate(self.stream.rounds, start=1):
            self.phase = phase
            for items in rounds:
                async with self._progress:
                    self.round_no += 1
                    self._progress.notify_all()
                if self.round_no in poison:
                    await self.sender.produce(poison[self.round_no])
                await self.sender.send(items)
            await self.staging_caught_up()
            await self.close(self.stream.closes[phase])
            self.say(f"phase {phase}/{len(self.stream.rounds)} closed "
                     f"({self.stream.closes[phase]}); {self.sender.via_ingest:,} events through "
                     f"ingest, {self.sender.direct:,} straight to Kafka")

    async def quiet(self) -> None:
        """Every group has committed everything it consumes and nothing moved for a while."""
        names = [self.topics.name(t) for t in ALL_TOPICS]
        names += [self.topics.dlq(t) for t in ALL_TOPICS]
        last: dict[Any, int] = {}
        still_since = time.monotonic()

        async def settled() -> bool:
            nonlocal last, still_since
            for service, topics in CONSUMES.items():
                if await self.probe.lag(self.group(service),
                                        [self.topics.name(t) for t in topics]):
                    still_since = time.monotonic()
                    return False
            ends = await self.probe.end_offsets(names)
            if ends != last:
                last, still_since = ends, time.monotonic()
                return False
            return time.monotonic() - still_since >= self.cfg.quiet

        await self.until("the stack to be quiet", settled)

    # -- the checks --------------------------------------------------------------------------

    async def checks(self) -> list[Check]:
        name = self.topics.name
        outbound = ("collection-stages", "collection-assignments", "repayments-applied",
                    "promise-outcomes", "contact-outcomes")
        bases = [LOAN_EVENTS, CALENDAR, *outbound]
        dlqs = [self.topics.dlq(t) for t in ALL_TOPICS]
        read = await asyncio.gather(*(self.probe.read(name(t)) for t in bases),
                                    *(self.probe.read(t) for t in dlqs))
        topics = dict(zip(bases, read, strict=False))
        letters = [_dead_letter(r) for records in read[len(bases):] for r in records]
        self.say(f"read {sum(len(r) for r in read):,} messages of {len(read)} topics")
        log_check, events = check_log(self.stream, topics[LOAN_EVENTS], topics[CALENDAR])
        expected = await asyncio.to_thread(replay, events, self.stream.closes,
                                           self.stream.collectors)
        self.say(f"replayed {len(expected.states):,} loans")
        views = await self.loan_views(expected.views)
        self.say(f"read {len(views):,} loans from staging")
        months = sorted({d.isoformat()[:7] for d in self.stream.closes})
        credits = await check_credits(expected, self.client, self.stack.urls["incentives"],
                                      self.stream.collectors.values(), months)
        contacts, sent = check_contacts(topics["contact-outcomes"])
        sandbox = await self.sandbox(sent)
        return [log_check, check_loans(expected, views),
                check_staging_effects(expected, topics), credits, contacts, sandbox,
                check_dead_letters(self.stream.poison, letters)]

    async def loan_views(self, loans: Any) -> dict[str, dict[str, Any] | None]:
        views: dict[str, dict[str, Any] | None] = {}
        slots = asyncio.Semaphore(8)

        async def one(loan_id: str) -> None:
            async with slots:
                r = await self.client.get(self.stack.url("staging", f"/v1/loans/{loan_id}"))
            views[loan_id] = r.json() if r.status_code == 200 else None

        await asyncio.gather(*(one(loan) for loan in loans))
        return views

    async def sandbox(self, sent: set[str]) -> Check:
        """Dispatch runs after the decision: wait (a while) until the provider has them all."""
        base = self.stack.urls["sandbox"]
        state: dict[str, Any] = {}

        async def dispatched() -> bool:
            state["messages"] = (await self.client.get(f"{base}/v1/messages")).json()["items"]
            got = {str(m["payload"].get("contact_id")) for m in state["messages"]}
            return sent <= got

        with contextlib.suppress(ChaosError):
            await self.until("the provider got every sent contact", dispatched,
                             timeout=min(self.cfg.wait, 180.0))
        received = (await self.client.get(f"{base}/v1/received")).json()
        return check_sandbox(sent, state.get("messages", []), received)

    # -- the whole run -----------------------------------------------------------------------

    async def run(self) -> None:
        t0 = time.monotonic()
        await asyncio.to_thread(self.stack.start_all)
        await self.probe.start()
        await self.producer.start()
        for team, collector in self.stream.collectors.items():
            r = await self.client.put(self.stack.url("staging", f"/v1/collectors/{collector}"),
                                      json={"name": f"Collector {team}", "team": team,
                                            "capacity": 100_000})
            if r.status_code not in (200, 201):
                raise ChaosError(f"staging refused collector {collector}: {r.text}")
        t1 = self.started = time.monotonic()
        self.result.timings["stack start"] = t1 - t0
        killers = [asyncio.create_task(self.killer(s, rounds))
                   for s, rounds in self.kill_plan().items()]
        try:
            await self.play()
            await asyncio.gather(*killers)
        finally:
            for task in killers:
                task.cancel()
            await asyncio.gather(*killers, return_exceptions=True)
        t2 = time.monotonic()
        self.result.timings["stream (kills and restarts included)"] = t2 - t1
        self.say("stream done; waiting for the stack to be quiet")
        await self.quiet()
        self.say("quiet; checking")
        t3 = time.monotonic()
        self.result.timings["until quiet"] = t3 - t2
        self.result.checks = await self.checks()
        self.result.timings["checks (replay included)"] = time.monotonic() - t3

    async def close_clients(self) -> None:
        with contextlib.suppress(Exception):
            await self.producer.stop()
        with contextlib.suppress(Exception):
            await self.probe.stop()
        await self.client.aclose()


async def remove_data(stack: Stack, kafka: str, database_url: str) -> None:
    """Delete a stack's topics and drop its schemas. Partitions are not free: a development
    broker (512 MB of heap here) holding thousands of them from runs nobody reads any more
    runs out of memory."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka, client_id="qingshou-chaos-cleanup")
    await admin.start()
    try:
        await admin.delete_topics(TopicNames(stack.prefix).all())
    finally:
        await admin.close()
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for service in SERVICES:
                schema = check_identifier(stack.schema(service))
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def _dead_letter(record: ConsumerRecord) -> DeadLetter:
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers or ()}
    return DeadLetter(record.topic, record.partition, record.offset, record.key, record.value,
                      headers)


async def run_chaos(cfg: ChaosConfig) -> ChaosResult:
    """Run the chaos test on a stack of its own; never raises for a failed check or a run
    that could not finish (``result.error``), and always stops the stack."""
    started = time.monotonic()
    stream = await asyncio.to_thread(build_stream, cfg.stream())
    result = ChaosResult(cfg, events=stream.events, loans=len(stream.loans),
                         closes=len(stream.closes), poison=len(stream.poison), logs=cfg.logs)
    stack = stack_for(cfg.logs, cfg.kafka, cfg.database_url, partitions=cfg.partitions)
    result.prefix = stack.prefix
    run = _Run(cfg, stream, stack, result)
    try:
        await asyncio.wait_for(run.run(), timeout=cfg.timeout)
    except TimeoutError:
        result.error = f"the run did not finish in {cfg.timeout:.0f}s"
    except (ChaosError, KafkaError, httpx.HTTPError, AssertionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.via_ingest, result.direct = run.sender.via_ingest, run.sender.direct
        result.reposts = run.sender.reposts
        await run.close_clients()
        await asyncio.to_thread(stack.stop_all)
        if result.ok and not cfg.keep:  # a failed run's data stays for a post-mortem
            with contextlib.suppress(KafkaError, SQLAlchemyError, OSError):
                await remove_data(stack, cfg.kafka, cfg.database_url)
                result.removed = True
        result.timings["total"] = time.monotonic() - started
    return result


def _seconds(value: float) -> str:
    return f"{value:,.1f} s" if value < 120 else f"{value / 60:,.1f} min ({value:,.0f} s)"


def report(result: ChaosResult) -> str:
    """The run as Markdown: what was sent, what was killed, how long, each check."""
    cfg = result.config
    kills: dict[str, int] = {}
    for k in result.kills:
        kills[k.service] = kills.get(k.service, 0) + 1
    lines = [
        f"## Chaos run: {'PASSED' if result.ok else 'FAILED'}", "",
        "| figure | value |", "|---|---|",
        f"| events | {result.events:,} for {result.loans:,} loans "
        f"({cfg.events_per_loan} per loan on average), seed {cfg.seed} |",
        f"| sent | {result.via_ingest:,} through ingest, {result.direct:,} straight to Kafka, "
        f"{result.closes} business days closed, {result.poison} poison messages |",
        f"| re-posts to ingest | {result.reposts:,} (refused, reset or 503 while it was "
        "down) |",
        "| kills (SIGKILL + restart) | " + ", ".join(
            f"{s} {kills.get(s, 0)}" for s in SERVICES) + f" (planned {cfg.kills} each) |",
    ]
    lines += [f"| {name} | {_seconds(value)} |" for name, value in result.timings.items()]
    if result.error:
        lines += ["", f"**The run stopped: {result.error}**"]
    lines += ["", "| check | result | counted |", "|---|---|---|"]
    for c in result.checks:
        lines.append(f"| {c.name} | {'pass' if c.ok else '**FAIL**'} | {c.counts} |")
    for c in result.checks:
        if c.problems:
            lines += ["", f"{c.name}:"] + [f"- {p}" for p in c.problems]
    if result.kills:
        lines += ["", "| killed | at | round | phase | back after |", "|---|---:|---:|---:|---:|"]
        for k in sorted(result.kills, key=lambda k: k.at):
            lines.append(f"| {k.service} | {k.at:.1f} s | {k.round_no} | {k.phase} | "
                         f"{k.restart_s:.1f} s |")
    if result.logs is not None:
        lines += ["", f"Service logs: `{result.logs}`"]
    if result.prefix:
        lines += ["", f"Topics `{result.prefix}.*` and schemas `e_{result.prefix[1:]}_*`: "
                  + ("deleted." if result.removed else "kept.")]
    return "\n".join(lines)


def bench_chaos(settings: ServiceSettings, events: int, events_per_loan: int, kills: int,
                seed: int, api_key: str) -> bool:
    """``qingshou bench chaos``: run on a stack of its own (Kafka and PostgreSQL from
    ``settings``), progress on stderr, the Markdown report on stdout; True if every check
    passed. Service logs go to a fresh directory under the system's temporary directory."""
    import sys
    import tempfile

    loans = max(1, -(-events // events_per_loan))
    logs = Path(tempfile.mkdtemp(prefix="qingshou-chaos-"))
    cfg = ChaosConfig(loans=loans, events_per_loan=events_per_loan, kills=kills,
                      kafka=settings.kafka_bootstrap, database_url=settings.database_url,
                      logs=logs, seed=seed, api_key=api_key,
                      timeout=1800.0 + events * 0.05, wait=900.0 + events * 0.01,
                      progress=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"chaos: {loans:,} loans x {events_per_loan} events, {kills} kills per service, "
          f"seed {seed}; logs in {logs}", file=sys.stderr, flush=True)
    result = asyncio.run(run_chaos(cfg))
    print(report(result), flush=True)
    return result.ok
