"""``qingshou``: the ops command-line tool (also ``python -m shared.cli``)."""

from __future__ import annotations

import asyncio
import os

import httpx
import typer
from rich.console import Console
from rich.table import Table

from shared.kafka import ensure_topics
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS, TopicNames

app = typer.Typer(help="Qingshou ops tool: topics, health, dead letters, benchmarks.",
                  no_args_is_help=True)
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
    suite: str = typer.Argument("runner", help="which benchmark: runner"),
    events: int = typer.Option(200_000, help="events for the batched run"),
    baseline_events: int = typer.Option(5_000, help="events for the per-event baseline"),
) -> None:
    """Run a benchmark against the local Kafka and PostgreSQL and print a Markdown table."""
    from shared import bench as runner_bench

    s = ServiceSettings()
    if suite != "runner":
        raise typer.BadParameter(f"unknown benchmark {suite!r}")
    results = asyncio.run(runner_bench.run(s.kafka_bootstrap, s.database_url, events,
                                           baseline_events, s.topic_partitions))
    console.print(runner_bench.report(results))


if __name__ == "__main__":
    app()
