"""End-to-end latency of the running stack: from ingest's 202 to the notifier's decision.

Setup posts borrowers and loans through ingest and waits until the services' consumer groups
have committed everything on `loan-events` (so the load is measured on a stack at rest, not
behind a backlog of setup events). The load then posts one `instalment.upcoming`
per loan, in batches of 50 every 50 ms (1,000 events/s by default), through ingest's batch
endpoint; each event's clock starts when its batch is answered 202 (Kafka acknowledged). A
group-less consumer of `contact-outcomes` stops the clock at the first `contact.attempted` of
the loan: the notifier decided (sent, deferred or suppressed) and the decision was committed and
published through its outbox. Each latency is split at the decision's own `time` attribute
(stamped by the notifier when it builds `contact.attempted`, inside the batch): before it, the
way to the notifier and the wait for its batch; after it, the rest of the batch, the commit,
the relay and Kafka. The first decisions are tallied by status: whether the notifier
sends, defers (quiet hours at the borrowers' local time of the run) or suppresses changes what
follows the decision (a send is dispatched to the provider by the same process). Afterwards the
peak resident memory (VmHWM) of each service process is read from /proc, using the pid files of
`scripts/stack.sh`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.gc_tuning import tune_gc

BATCH = 50
# the services reading `loan-events`, whose backlog must be gone before the load starts
SERVICES_ON_LOAN_EVENTS = ("staging", "notifier", "incentives")
SETTLE_TIMEOUT_S = 600.0


@dataclass
class StackBenchResult:
    sent: int
    decided: int
    seconds: float
    peak_rss_mb: dict[str, float]
    settle_seconds: float = 0.0
    first_status: Counter[str] = field(default_factory=Counter)
    cpu_during_load: dict[str, float] = field(default_factory=dict)
    zone: str = ""
    # per decided loan: (loan id, 202 at, decision made at, decision read at), Unix seconds;
    # every latency below is read from it
    timeline: list[tuple[str, float, float, float]] = field(default_factory=list)

    @property
    def latencies_ms(self) -> list[float]:
        """202 → decision published (read from `contact-outcomes`)."""
        return [max(0.0, (read - accepted) * 1000) for _, accepted, _, read in self.timeline]

    @property
    def to_decision_ms(self) -> list[float]:
        """202 → the decision's own time stamp."""
        return [(made - accepted) * 1000 for _, accepted, made, _ in self.timeline]

    @property
    def to_topic_ms(self) -> list[float]:
        """The decision's time stamp → read from `contact-outcomes`."""
        return [(read - made) * 1000 for _, _, made, read in self.timeline]

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _event(type_: str, subject: str, data: dict) -> dict:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "urn:qingshou:bench",
            "type": type_, "time": "2026-11-28T10:00:00+08:00", "subject": subject,
            "data": data}


# candidates for ``zone_for``: whole-hour offsets around the clock
_ZONES = ("Asia/Shanghai", "Asia/Kolkata", "Asia/Dubai", "Europe/Moscow", "Europe/Berlin",
          "Europe/London", "Atlantic/Azores", "America/Sao_Paulo", "America/New_York",
          "America/Chicago", "America/Denver", "America/Los_Angeles", "Pacific/Honolulu",
          "Pacific/Auckland", "Asia/Tokyo")


def zone_for(when: str, now: datetime | None = None) -> str:
    """The borrowers' time zone for a run: an IANA name as given, or ``night`` / ``day``: the
    first zone of a fixed list where it is now between 00:00 and 05:00 (well inside the
    default quiet hours, 21:00-08:00: every first decision is a deferral, the dispatcher
    sends nothing) or between 10:00 and 17:00 (decisions are sends, queued for the provider
    sandbox). Runs of either kind can then be compared at any hour of the day."""
    if when not in ("night", "day"):
        ZoneInfo(when)  # an unknown name fails here, before the run
        return when
    hours = range(0, 5) if when == "night" else range(10, 17)
    now = now or datetime.now(UTC)
    for name in _ZONES:
        if now.astimezone(ZoneInfo(name)).hour in hours:
            return name
    raise ValueError(f"no zone in the list has {when} now")  # the list spans every hour


def _setup_events(tag: str, loans: int, zone: str = "Asia/Shanghai") -> list[dict]:
    events = []
    for i in range(loans):
        loan, borrower = f"{tag}-L{i}", f"{tag}-B{i}"
        events.append(_event("borrower.updated", borrower, {
            "borrower_id": borrower, "name": "Bench Borrower", "phone": "+8613900000000",
            "email": "bench@example.com", "timezone": zone, "language": "zh-CN",
            "opted_out_channels": [], "vulnerable": False}))
        events.append(_event("loan.opened", loan, {
            "loan_id": loan, "borrower_id": borrower, "product": "consumer_loan",
            "currency": "CNY", "principal": "10000.00", "opened_on": "2026-01-02"}))
    return events


async def _post(client: httpx.AsyncClient, url: str, events: list[dict]) -> None:
    for _ in range(20):
        r = await client.post(url, content=orjson.dumps(events),
                              headers={"Content-Type": "application/cloudevents-batch+json"})
        if r.status_code in (202, 207):
            return
        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
    raise RuntimeError(f"ingest refused a batch: {r.status_code} {r.text[:200]}")


def _prefix_of(contacts_topic: str) -> str:
    return contacts_topic[: -len("contact-outcomes")]


async def wait_until_consumed(bootstrap: str, topic: str, groups: Sequence[str],
                              timeout: float = SETTLE_TIMEOUT_S) -> float:
    """Wait until every group in ``groups`` has committed the end of ``topic`` as it is now;
    returns the seconds waited (raises TimeoutError after ``timeout``)."""
    started = time.monotonic()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="qingshou-bench")
    await probe.start()
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        if not tps:
            raise RuntimeError(f"topic {topic} has no partitions")
        end = await probe.end_offsets(tps)
        while True:
            behind = 0
            for group in groups:
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
                for tp in tps:
                    done = committed[tp].offset if tp in committed else -1
                    behind += max(0, end[tp] - max(done, 0))
            if behind == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{behind} events of {topic} still unconsumed by {groups}")
            await asyncio.sleep(0.5)
    finally:
        await probe.stop()
        await admin.close()


def cpu_seconds(run_dir: Path) -> dict[int, tuple[str, float]]:
    """CPU time (user + system) used so far by each process on the machine: pid -> (role,
    seconds).

    Roles: the services by their pid files in ``run_dir``, then the Kafka broker, PostgreSQL
    (all its backends together), this benchmark, and everything else. :func:`cpu_by_role` of
    two snapshots says where the machine's two cores went during the load.
    """
    tick = os.sysconf("SC_CLK_TCK")
    roles: dict[int, str] = {}
    for pid_file in run_dir.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            roles[int(pid_file.read_text().strip())] = pid_file.stem
    roles[os.getpid()] = "bench"
    used: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:]
        fields = rest.split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        pid = int(entry.name)
        role = roles.get(pid)
        if role is None:
            role = ("kafka" if b"kafka.Kafka" in cmdline else
                    "postgres" if comm.startswith("postgres") else "other")
        used[pid] = (role, seconds)
    return used


def cpu_by_role(before: dict[int, tuple[str, float]],
                after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU used between two snapshots, by role: each process alive at the second counts what
    it used since the first (all of it if it started in between). A process that ended in
    between is left out rather than subtracted (short-lived PostgreSQL backends of other
    work on the machine used to cancel out the stack's own)."""
    used: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        earlier = before.get(pid)
        spent = seconds - earlier[1] if earlier is not None and earlier[0] == role else seconds
        used[role] = used.get(role, 0.0) + max(0.0, spent)
    return used


def peak_rss_mb(run_dir: Path) -> dict[str, float]:
    """VmHWM (peak resident set) of each service whose pid file is in ``run_dir``."""
    peaks: dict[str, float] = {}
    for pid_file in sorted(run_dir.glob("*.pid")):
        try:
            status = Path(f"/proc/{pid_file.read_text().strip()}/status").read_text()
        except (OSError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[pid_file.stem] = int(line.split()[1]) / 1024
    return peaks


async def run(*, ingest_url: str, api_key: str, bootstrap: str, contacts_topic: str,
              run_dir: Path, rate: int = 1000, seconds: int = 15,
              zone: str = "Asia/Shanghai") -> StackBenchResult:
    tag = f"SB{uuid.uuid4().hex[:6]}"
    total = rate * seconds
    headers = {"Authorization": f"Bearer {api_key}"}
    batch_url = f"{ingest_url}/v1/events/batch"
    consumer = AIOKafkaConsumer(contacts_topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest")
    await consumer.start()
    first_decision: dict[str, float] = {}
    decided_at: dict[str, float] = {}
    first_status: Counter[str] = Counter()
    accepted: dict[str, float] = {}
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for rec in records:
                    # the key is the loan id (the subject): only a loan's first decision is
                    # read, so the bench spends as little of the shared cores as it can
                    if rec.key is not None and rec.key.decode() in first_decision:
                        continue
                    event = orjson.loads(rec.value)
                    data = event["data"]
                    loan = data["loan_id"]
                    if loan.startswith(tag) and loan not in first_decision:
                        first_decision[loan] = now
                        decided_at[loan] = datetime.fromisoformat(event["time"]).timestamp()
                        first_status[data["status"]] += 1

    watcher = asyncio.create_task(watch())
    try:
        async with httpx.AsyncClient(timeout=30, headers=headers,
                                     limits=httpx.Limits(max_connections=64)) as client:
            setup = _setup_events(tag, total, zone)
            for i in range(0, len(setup), 1000):
                await _post(client, batch_url, setup[i:i + 1000])
            prefix = _prefix_of(contacts_topic)
            settled = await wait_until_consumed(
                bootstrap, f"{prefix}loan-events",
                [f"{prefix}qingshou-{name}" for name in SERVICES_ON_LOAN_EVENTS])
            # the bench's own collector out of the measurement: a full collection of its heap
            # (the setup's events, httpx, aiokafka) stalled its posting and its reading by
            # 250-300 ms about a second into every run, a tail the stack had nothing to do with
            tune_gc()
            cpu_before = cpu_seconds(run_dir)
            started = time.monotonic()
            pending = []

            async def send(first: int) -> None:
                events = [_event("instalment.upcoming", f"{tag}-L{i}", {
                    "loan_id": f"{tag}-L{i}", "instalment_no": 1, "due_date": "2026-12-01",
                    "amount_due": "500.00"}) for i in range(first, min(first + BATCH, total))]
                await _post(client, batch_url, events)
                at = time.time()
                for ev in events:
                    accepted[ev["subject"]] = at

            for n, first in enumerate(range(0, total, BATCH)):
                delay = started + n * BATCH / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(send(first)))
            await asyncio.gather(*pending)
            elapsed = time.monotonic() - started
        deadline = time.monotonic() + 60
        while len([k for k in accepted if k in first_decision]) < total:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        cpu_after = cpu_seconds(run_dir)
    finally:
        stop.set()
        await watcher
        await consumer.stop()
    seen = [k for k in accepted if k in first_decision]
    return StackBenchResult(
        sent=len(accepted), decided=len(seen), seconds=elapsed,
        peak_rss_mb=peak_rss_mb(run_dir), settle_seconds=settled, first_status=first_status,
        cpu_during_load=cpu_by_role(cpu_before, cpu_after),
        timeline=[(k, accepted[k], decided_at[k], first_decision[k]) for k in seen],
        zone=zone)


def write_timeline(result: StackBenchResult, path: Path) -> None:
    """Each loan's moments as CSV, in order of acceptance: ingest's 202, the decision's own
    time stamp, and when the bench read it from `contact-outcomes` (Unix seconds). To find
    where a tail comes from, lay it beside what else ran at that moment (autovacuum, a
    checkpoint, a periodic job)."""
    with path.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["loan_id", "accepted_at", "decided_at", "read_at"])
        for loan, *moments in sorted(result.timeline, key=lambda row: row[1]):
            rows.writerow([loan, *(f"{m:.6f}" for m in moments)])


def report(result: StackBenchResult, rate: int) -> str:
    lines = [f"Offered {rate:,} events/s for {result.seconds:.1f} s: {result.sent:,} accepted "
             f"(202), {result.decided:,} decided "
             f"({result.sent / result.seconds:,.0f} events/s achieved).",
             f"Borrowers in {result.zone or '?'}; setup absorbed by every consumer in "
             f"{result.settle_seconds:.1f} s. First decisions: "
             + (", ".join(f"{n:,} {status}" for status, n
                          in sorted(result.first_status.items())) or "none")
             + ".", "",
             "| ms | 202 → decision published | 202 → decision made | made → published |",
             "|---|---:|---:|---:|"]
    columns = (result.latencies_ms, result.to_decision_ms, result.to_topic_ms)
    for p in (50, 95, 99):
        lines.append(f"| p{p} | " + " | ".join(f"{percentile(c, p):,.0f}" for c in columns)
                     + " |")
    lines.append("| max | " + " | ".join(f"{max(c, default=float('nan')):,.0f}"
                                          for c in columns) + " |")
    lines += ["", "| service | peak RSS (MB) |", "|---|---:|"]
    lines += [f"| {name} | {mb:,.0f} |" for name, mb in result.peak_rss_mb.items()]
    if result.cpu_during_load and result.sent:
        lines += ["", "CPU used from the first post until the last decision, by process:", "",
                  "| process | CPU s | ms per event |", "|---|---:|---:|"]
        for role, used in sorted(result.cpu_during_load.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {role} | {used:,.1f} | {used * 1000 / result.sent:,.2f} |")
    return "\n".join(lines)
