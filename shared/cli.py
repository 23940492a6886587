"""``qingshou``: the ops command-line tool (also ``python -m shared.cli``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.kafka import ensure_topics
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS, TopicNames

app = typer.Typer(help="Qingshou ops tool: topics, health, dead letters, loans, the stack, "
                       "benchmarks.", no_args_is_help=True)
dlq_app = typer.Typer(help="List and replay the dead letters of a topic.", no_args_is_help=True)
stack_app = typer.Typer(help="Start, stop and inspect the local stack.", no_args_is_help=True)
loan_app = typer.Typer(help="Look at one loan across the services.", no_args_is_help=True)
demo_app = typer.Typer(help="Generate a synthetic portfolio, or play it through the stack.",
                       no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(stack_app, name="stack")
app.add_typer(loan_app, name="loan")
app.add_typer(demo_app, name="demo")
outbox_app = typer.Typer(help="Outbox rows the broker refused for good (quarantined): list them, "
                         "send them again.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
console = Console()

SERVICE_PORTS = {"ingest": 8001, "staging": 8002, "notifier": 8003, "incentives": 8004}


def _port(name: str) -> int:
    return int(os.environ.get(f"QS_{name.upper()}_PORT", SERVICE_PORTS[name]))


@app.command()
def topics(partitions: int | None = typer.Option(None, help="partitions per topic")) -> None:
    """Create the project's topics and their dead-letter twins (idempotent)."""
    s = ServiceSettings()
    names = [TopicNames(s.topic_prefix).name(t) for t in ALL_TOPICS]
    created = asyncio.run(ensure_topics(s.kafka_bootstrap, names,
                                        partitions or s.topic_partitions))
    console.print(f"topics ready ({len(created)} created, {2 * len(names)} in all)")


@app.command()
def check() -> None:
    """Check that every service is ready (database and Kafka reachable); exit 1 if not."""
    table = Table("service", "url", "ready", "checks")
    ok = True
    with httpx.Client(timeout=5) as client:
        for name in SERVICE_PORTS:
            url = f"http://127.0.0.1:{_port(name)}"
            try:
                r = client.get(f"{url}/readyz")
                body = r.json()
                ready = r.status_code == 200
                detail = ", ".join(f"{k}={'ok' if v else 'DOWN'}"
                                   for k, v in body.get("checks", {}).items())
            except httpx.HTTPError as exc:
                ready, detail = False, f"unreachable ({type(exc).__name__})"
            ok &= ready
            table.add_row(name, url, "[green]yes[/]" if ready else "[red]no[/]", detail)
    console.print(table)
    if not ok:
        raise typer.Exit(1)
    console.print("All four services are healthy on Kafka and PostgreSQL. Stop with `make down`.")


@app.command()
def bench(
    suite: str = typer.Argument("runner", help="which benchmark: runner | stack | chaos | "
                                "instructions"),
    events: int | None = typer.Option(None, help="runner: events for the batched run "
                                      "(200,000); chaos: events of the book (100,000); "
                                      "instructions: batches of 5,000 (3)"),
    baseline_events: int = typer.Option(5_000, help="runner: events for the baseline"),
    rate: int = typer.Option(1_000, help="stack: events per second offered to ingest"),
    seconds: int = typer.Option(15, help="stack: how long the load lasts"),
    zone: str = typer.Option("night", help="stack: the borrowers' time zone, or night / day: "
                             "a zone where it is night (decisions deferred for quiet hours) "
                             "or day (decisions are sends) at the time of the run"),
    api_key: str = typer.Option("qs-dev-admin", envvar="QS_API_KEY", help="stack: ingest key"),
    processes: int = typer.Option(1, help="runner: also run the batched test as this many "
                                  "consumer processes of one group (make bench: 2)"),
    kills: int = typer.Option(3, min=0, help="chaos: SIGKILLs of each service"),
    seed: int = typer.Option(7, help="chaos: seed of the stream and of the kills"),
    events_per_loan: int = typer.Option(25, min=6, help="chaos: events per loan (average)"),
    timeline: str | None = typer.Option(None, help="stack: write each loan's 202, decision "
                                        "and read times to this CSV file"),
) -> None:
    """Run a benchmark and print Markdown tables.

    ``runner``: the shared consumer runner on the local Kafka and PostgreSQL.
    ``stack``: the running stack (``make up``): latency from ingest's 202 to the notifier's
    published decision at ``--rate`` events/s, and each service's peak RSS.
    ``chaos``: a stack of its own under SIGKILLs (``shared/ops/chaos.py``); exit 1 if a check
    fails.
    ``instructions``: the runner's probe consumer, machine instructions per event (valgrind's
    callgrind, in process, real PostgreSQL, no Kafka): the deterministic measure of a change.
    """
    from shared import bench as runner_bench

    s = ServiceSettings()
    if suite == "stack":
        from pathlib import Path

        from shared.ops import stack_bench

        home = Path(os.environ.get("QS_HOME", Path(__file__).resolve().parents[1] / ".local"))
        if timeline and not Path(timeline).resolve().parent.is_dir():
            raise typer.BadParameter(f"no folder for {timeline}", param_hint="--timeline")
        result = asyncio.run(stack_bench.run(
            ingest_url=f"http://127.0.0.1:{_port('ingest')}", api_key=api_key,
            bootstrap=s.kafka_bootstrap,
            contacts_topic=TopicNames(s.topic_prefix).name("contact-outcomes"),
            run_dir=home / "run", rate=rate, seconds=seconds,
            zone=stack_bench.zone_for(zone)))
        console.print(stack_bench.report(result, rate))
        if timeline:
            stack_bench.write_timeline(result, Path(timeline))
        return
    if suite == "chaos":
        from shared.ops.chaos import bench_chaos

        if not bench_chaos(s, events or 100_000, events_per_loan, kills, seed, api_key):
            raise typer.Exit(1)
        return
    if suite == "instructions":
        per_event = runner_bench.instructions_per_event(max(2, events or 3))
        print(f"probe consumer, instructions per event (callgrind): {per_event:,}")
        return
    if suite != "runner":
        raise typer.BadParameter(f"unknown benchmark {suite!r}")
    results = asyncio.run(runner_bench.run(s.kafka_bootstrap, s.database_url, events or 200_000,
                                           baseline_events, s.topic_partitions, processes))
    print(runner_bench.report(results))  # plain: a Markdown table must not be wrapped


# -- dead letters ------------------------------------------------------------------------------

def _dlq_name(topic: str, prefix: str | None) -> str:
    """The real DLQ name of ``topic`` (``loan-events`` or ``loan-events.dlq``) under the topic
    prefix (``--prefix``, else QS_TOPIC_PREFIX); a name already carrying it is kept."""
    from shared.ops.dlq import dlq_topic

    pre = (ServiceSettings().topic_prefix if prefix is None else prefix).rstrip(".")
    if pre and not topic.startswith(f"{pre}."):
        topic = TopicNames(pre).name(topic)
    return dlq_topic(topic)


def _short(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _letters_table(letters: list[Any], title: str) -> Table:
    table = Table("partition", "offset", "reason", "consumer", "original", "dead-lettered at",
                  "event", "detail", title=title)
    for d in letters:
        original = f"{d.original_topic}:{d.original_partition}:{d.original_offset}"
        event = f"{d.event_type or '?'} {d.event_id or ''}".strip() if d.event_type or \
            d.event_id else "(not JSON)"
        table.add_row(str(d.partition), str(d.offset), escape(d.reason), escape(d.consumer),
                      escape(original), escape(d.dead_lettered_at), escape(event),
                      escape(_short(d.detail, 60)))
    return table


def _offsets(values: list[str] | None) -> set[tuple[int, int]] | None:
    from shared.ops.dlq import parse_offsets

    try:
        return parse_offsets(values) if values else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--offset") from exc


def _read_letters(name: str, **filters: Any) -> list[Any]:
    from shared.ops.dlq import read_dead_letters

    try:
        return asyncio.run(read_dead_letters(ServiceSettings().kafka_bootstrap, name, **filters))
    except LookupError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from exc
    except Exception as exc:  # Kafka unreachable, timeouts: one line, not a traceback
        console.print(f"[red]could not read {escape(name)}: {escape(repr(exc))}[/]")
        raise typer.Exit(1) from exc


@dlq_app.command("list")
def dlq_list(
    topic: str = typer.Argument(..., help="topic whose dead letters to list, e.g. loan-events"),
    reason: str | None = typer.Option(None, help="only this qs-reason"),
    consumer: str | None = typer.Option(None, help="only this qs-consumer"),
    limit: int | None = typer.Option(None, min=1, help="at most this many"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
    prefix: str | None = typer.Option(None, help="topic prefix (default: QS_TOPIC_PREFIX)"),
) -> None:
    """List the dead letters of <topic>.dlq from the beginning (reads only, commits nothing)."""
    name = _dlq_name(topic, prefix)
    letters = _read_letters(name, reason=reason, consumer=consumer, limit=limit)
    if as_json:
        for d in letters:
            typer.echo(orjson.dumps(d.to_dict()).decode())
        return
    console.print(_letters_table(letters, f"{name}: {len(letters)} dead letter(s)"))


@dlq_app.command("replay")
def dlq_replay(
    topic: str = typer.Argument(..., help="topic whose dead letters to replay, e.g. loan-events"),
    reason: str | None = typer.Option(None, help="only this qs-reason"),
    consumer: str | None = typer.Option(None, help="only this qs-consumer"),
    offset: list[str] | None = typer.Option(None, help="only PARTITION:OFFSET of the DLQ "
                                                       "(repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be replayed"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    prefix: str | None = typer.Option(None, help="topic prefix (default: QS_TOPIC_PREFIX)"),
) -> None:
    """Publish the selected dead letters' original key and value again to their original topic
    (headers qs-replayed-from, qs-replayed-at); the consuming service applies them anew."""
    from shared.ops.dlq import replay_dead_letters

    name = _dlq_name(topic, prefix)
    letters = _read_letters(name, reason=reason, consumer=consumer, offsets=_offsets(offset))
    if not letters:
        console.print(f"no dead letters of {escape(name)} match; nothing to replay")
        return
    console.print(_letters_table(letters, f"{name}: {len(letters)} selected"))
    if dry_run:
        console.print(f"dry run: would replay {len(letters)} dead letter(s); nothing published")
        return
    if not yes and not typer.confirm(f"Replay {len(letters)} dead letter(s)?"):
        console.print("cancelled; nothing published")
        raise typer.Exit(1)
    try:
        done = asyncio.run(replay_dead_letters(ServiceSettings().kafka_bootstrap, letters))
    except Exception as exc:
        console.print(f"[red]replay failed: {escape(repr(exc))}[/] (earlier ones were published)")
        raise typer.Exit(1) from exc
    for r in done:
        console.print(f"  {escape(r.letter.position)} -> {escape(r.topic)}:{r.partition}:"
                      f"{r.offset}")
    console.print(f"replayed {len(done)} dead letter(s)")


# -- quarantined outbox rows ---------------------------------------------------------------------

@outbox_app.command("list")
def outbox_list(
    service: list[str] | None = typer.Option(None, help="only this service's outbox "
                                             "(repeatable; default: staging, notifier, "
                                             "incentives)"),
    schema: str | None = typer.Option(None, help="read this schema instead (QS_DB_SCHEMA of "
                                      "an instance that overrides it)"),
    limit: int = typer.Option(1000, min=1, help="at most this many per outbox"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
) -> None:
    """List the quarantined rows of the services' outboxes (read only)."""
    from shared.ops.outbox import OUTBOX_SERVICES, list_quarantined

    schemas = [schema] if schema else list(service or OUTBOX_SERVICES)
    errors = Console(stderr=True)  # the JSON lines on stdout stay clean
    rows, failed = [], False
    for name in schemas:  # an outbox that cannot be read (not deployed here): the others still
        try:
            found = asyncio.run(list_quarantined(ServiceSettings().database_url, name, limit))
        except Exception as exc:  # PostgreSQL unreachable, a schema missing: one line each
            errors.print(f"[red]could not read the outbox of {escape(name)}: "
                         f"{escape(repr(exc))}[/]")
            failed = True
            continue
        if len(found) >= limit:
            errors.print(f"[yellow]{escape(name)}: the first {limit} shown; there may be more "
                         f"(--limit)[/]")
        rows += found
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row.to_dict()).decode())
    else:
        table = Table("outbox", "id", "topic", "key", "bytes", "created at", "quarantined at",
                      "error", title=f"{len(rows)} quarantined outbox row(s)")
        for r in rows:
            table.add_row(escape(r.schema), str(r.id), escape(r.topic),
                          escape(r.key.decode("utf-8", "replace") if r.key is not None else ""),
                          f"{r.size:,}", r.created_at.isoformat(timespec="seconds"),
                          r.failed_at.isoformat(timespec="seconds"),
                          escape(_short(r.last_error, 60)))
        console.print(table)
    if failed:
        raise typer.Exit(1)


@outbox_app.command("retry")
def outbox_retry(
    service: str = typer.Argument(..., help="whose outbox: staging, notifier or incentives"),
    ids: list[int] = typer.Argument(..., help="row ids, as `qingshou outbox list` shows them"),
    schema: str | None = typer.Option(None, help="the schema, when not the service's name"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
) -> None:
    """Send quarantined rows again once their cause is mended (the broker's message size
    raised, the topic created): their mark is cleared and the service's relay publishes them
    in its next cycle, after the rows of their key published meanwhile."""
    from shared.ops.outbox import OUTBOX_SERVICES, retry_quarantined

    if schema is None and service not in OUTBOX_SERVICES:
        raise typer.BadParameter(f"one of {', '.join(OUTBOX_SERVICES)} (or give --schema)",
                                 param_hint="service")
    if not yes and not typer.confirm(f"Send {len(ids)} quarantined row(s) of {service} again?"):
        console.print("cancelled; nothing changed")
        return
    settings = ServiceSettings()
    try:
        done = asyncio.run(retry_quarantined(settings.database_url, schema or service, ids,
                                             settings.relay_shards))
    except Exception as exc:
        console.print(f"[red]retry failed: {escape(repr(exc))}[/]")
        raise typer.Exit(1) from exc
    missed = sorted(set(ids) - set(done))
    console.print(f"{len(done)} row(s) handed back to the relay: {done}")
    if missed:  # exit 3: not a usage error (2), not a failure (1)
        console.print(f"[yellow]not quarantined (already sent, unknown, or not set aside): "
                      f"{missed}[/]")
        raise typer.Exit(3)


# -- the stack ---------------------------------------------------------------------------------

def _stack(action: str, services_only: bool) -> None:
    from shared.ops.stack import run_stack

    code = run_stack(action, services_only)
    if code:
        raise typer.Exit(code)


@stack_app.command("up")
def stack_up(services_only: bool = typer.Option(
        False, "--services-only", help="only the services (scripts/stack.sh start)")) -> None:
    """Bring the stack up: `make up` (PostgreSQL, Kafka, topics, services, sandbox)."""
    _stack("up", services_only)


@stack_app.command("down")
def stack_down(services_only: bool = typer.Option(
        False, "--services-only", help="only the services; leave Kafka and PostgreSQL up")) -> None:
    """Stop the stack: `make down` (services, then Kafka and PostgreSQL)."""
    _stack("down", services_only)


@stack_app.command("status")
def stack_status() -> None:
    """Show each service's state (`scripts/stack.sh status`); exit 1 unless all are ready."""
    _stack("status", False)


# -- a loan across the services ----------------------------------------------------------------

def _service_url(name: str) -> str:
    return f"http://127.0.0.1:{_port(name)}"


def _print_loan(body: dict[str, Any]) -> None:
    owner = body.get("owner") or {}
    rows = [
        ("stage", body.get("stage")), ("status", body.get("status")),
        ("DPD", body.get("dpd")),
        ("arrears", f"{body.get('arrears')} {body.get('currency') or ''}".strip()),
        ("oldest due date", body.get("oldest_due_date")),
        ("business date", body.get("business_date")),
        ("product", body.get("product")), ("borrower", body.get("borrower_id")),
        ("owner", f"{owner.get('collector_id')} ({owner.get('team')})" if owner else None),
        ("relationship manager", body.get("relationship_manager_id")),
        ("flags", ", ".join(map(str, body.get("flags") or [])) or "none"),
        ("open promises", len(body.get("open_promises") or [])),
        ("next transition", body.get("next_transition_date")),
    ]
    table = Table("field", "value", show_header=False)
    for k, v in rows:
        table.add_row(k, escape("" if v is None else str(v)))
    console.print(table)
    history = body.get("history") or []
    if history:
        cols = list(dict.fromkeys(k for h in history for k in h))
        hist = Table(*cols, title="stage history")
        for h in history:
            hist.add_row(*(escape(str(h.get(c, ""))) for c in cols))
        console.print(hist)


def _print_contacts(body: dict[str, Any]) -> None:
    items = body.get("items") or []
    if not items:
        console.print("no contacts")
        return
    cols = ("decided_at", "channel", "template", "stage", "trigger", "status", "reason",
            "scheduled_for", "contact_id")
    table = Table(*cols)
    for c in items:
        table.add_row(*(escape("" if c.get(k) is None else str(c.get(k))) for k in cols))
    console.print(table)
    if body.get("next_cursor"):
        console.print("(more contacts on the next page)")


@loan_app.command("show")
def loan_show(
    loan_id: str = typer.Argument(..., help="the loan id, e.g. LN-2024-000123"),
    api_key: str = typer.Option("qs-dev-admin", envvar="QS_API_KEY",
                                help="bearer API key with the read scope"),
    as_json: bool = typer.Option(False, "--json", help="print the raw answers as JSON"),
) -> None:
    """What staging (ledger, stage, owner) and notifier (contacts) know of a loan."""
    from shared.ops.loans import LOAN_SOURCES, loan_report

    urls = {service: _service_url(service) for _, service, _ in LOAN_SOURCES}
    sections = asyncio.run(loan_report(loan_id, urls, api_key))
    if as_json:
        typer.echo(orjson.dumps([s.to_dict() for s in sections]).decode())
        return
    for s in sections:
        console.rule(f"{s.name} ({s.service}, {s.url})")
        if s.status == "down":
            console.print(f"[red]{s.service} is down[/] ({escape(s.detail)})")
        elif s.status == "not_found":
            console.print(f"[yellow]{s.service} does not know loan {escape(loan_id)}[/] (404)")
        elif s.status == "unauthorized":
            console.print(f"[red]{s.service} refused the API key[/] ({s.http_status})")
        elif s.status == "error":
            console.print(f"[red]{s.service} answered {s.http_status}[/] {escape(s.detail)}")
        elif s.name == "loan":
            _print_loan(s.body)
        else:
            _print_contacts(s.body)


# -- the demo ----------------------------------------------------------------------------------

@demo_app.command("generate")
def demo_generate(
    out: str = typer.Option(..., "--out", help="JSON lines file to write ('-' for stdout)"),
    loans: int = typer.Option(2000, min=1, help="loans in the book"),
    days: int = typer.Option(120, min=1, help="business days"),
    seed: int = typer.Option(7, help="random seed (same seed, same events)"),
    start: str = typer.Option("2025-01-06", help="first business date (YYYY-MM-DD)"),
    tag: str = typer.Option("DEMO", help="prefix of the loan, borrower and event ids"),
) -> None:
    """Write the synthetic portfolio as CloudEvents, one JSON object per line, day by day."""
    import datetime as dt
    import sys

    from rich.progress import Progress

    from shared.demo.generator import DemoConfig, generate

    try:
        cfg = DemoConfig(loans=loans, days=days, seed=seed, start=dt.date.fromisoformat(start),
                         tag=tag)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    n = 0
    sink = sys.stdout.buffer if out == "-" else open(out, "wb")
    try:
        with Progress(console=Console(stderr=True), disable=out == "-") as progress:
            task = progress.add_task("generating", total=days)
            for batch in generate(cfg):
                sink.write(b"".join(orjson.dumps(e) + b"\n" for e in batch))
                n += len(batch)
                progress.advance(task)
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
    Console(stderr=True).print(f"{n:,} events for {loans:,} loans over {days} business days"
                               f" -> {escape(out)}")


@demo_app.command("play")
def demo_play(
    loans: int = typer.Option(2000, min=1, envvar="QS_DEMO_LOANS", help="loans in the book"),
    days: int = typer.Option(120, min=1, envvar="QS_DEMO_DAYS", help="business days to play"),
    seed: int = typer.Option(7, envvar="QS_DEMO_SEED", help="random seed"),
    speed: bool = typer.Option(False, "--speed", help="do not wait for staging's end of day "
                                                      "after every day (only every 10th)"),
    api_key: str = typer.Option("qs-dev-admin", envvar="QS_API_KEY",
                                help="bearer key with the events and admin scopes"),
) -> None:
    """Play a synthetic portfolio through the running stack and print the summary."""
    from shared.demo.player import play
    from shared.topics import CONTACT_OUTCOMES

    s = ServiceSettings()
    urls = {name: _service_url(name) for name in SERVICE_PORTS}
    urls["sandbox"] = f"http://127.0.0.1:{os.environ.get('QS_SANDBOX_PORT', '8005')}"
    try:
        asyncio.run(play(loans=loans, days=days, seed=seed, speed=speed, urls=urls,
                         api_key=api_key, bootstrap=s.kafka_bootstrap,
                         contacts_topic=TopicNames(s.topic_prefix).name(CONTACT_OUTCOMES),
                         console=console))
    except (httpx.HTTPError, RuntimeError) as exc:
        console.print(f"[red]demo failed: {escape(str(exc) or repr(exc))}[/]")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
