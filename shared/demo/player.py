"""Play the synthetic portfolio through the running stack, one business day at a time.

1. Ask staging for its business date: the demo starts on the next weekday (a business date not
   after the current one would change nothing), or on ``DEFAULT_START`` on a fresh stack. The
   run's ids carry a tag made of that date and the seed, so runs never collide and a run
   restarted on the same date re-sends the same ids (duplicates, no effect).
2. Register the collector roster (staging ``PUT /v1/collectors/{id}``).
3. Per day: post the day's events to ingest (``POST /v1/events/batch``, up to 1,000 per
   request; 429/503 are retried after ``Retry-After``, a 503 re-sends only the items Kafka did
   not acknowledge), then the close, then wait until staging has finished that end of day
   (``GET /v1/portfolio``: ``business_date`` is the day and the roll-rate window ends on it).
   ``speed`` waits only every ``SPEED_WAIT_EVERY`` days and at the end.
4. Print the summary (``shared.demo.summary``).

The day's loan events go to ``loan-events`` and the close to ``calendar``; staging may see
the close before the last of the day's loan events. That is harmless: every handler first
ages the loan to the current business date, so a late event of day D is applied on D.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from shared.demo.generator import DemoConfig, generate, roster
from shared.demo.summary import collect, render

__all__ = ["DEFAULT_START", "PlayResult", "play", "start_after"]

DEFAULT_START = date(2025, 1, 6)
BATCH = 1000
BATCH_MEDIA = "application/cloudevents-batch+json"
SPEED_WAIT_EVERY = 10
DAY_TIMEOUT_S = 180.0


@dataclass
class PlayResult:
    tag: str
    start: date
    days: int
    events: int = 0
    rejected: int = 0
    retries: int = 0
    seconds: float = 0.0
    rejections: list[dict[str, Any]] = field(default_factory=list)


def start_after(business_date: str | None) -> date:
    """The first weekday after staging's business date (DEFAULT_START on a fresh stack)."""
    if not business_date:
        return DEFAULT_START
    d = date.fromisoformat(business_date) + timedelta(days=1)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def _retry_after(r: httpx.Response) -> float:
    try:
        return min(max(float(r.headers.get("retry-after", "1")), 0.1), 30.0)
    except ValueError:
        return 1.0


async def post_batch(client: httpx.AsyncClient, url: str, events: Sequence[dict[str, Any]],
                     result: PlayResult, attempts: int = 20) -> None:
    """Post ``events`` until every item is accepted, a duplicate, or rejected (recorded)."""
    todo = list(events)
    for _ in range(attempts):
        try:
            r = await client.post(url, content=orjson.dumps(todo),
                                  headers={"Content-Type": BATCH_MEDIA})
        except httpx.TransportError:
            result.retries += 1
            await asyncio.sleep(1.0)
            continue
        if r.status_code in (202, 207):
            for item in r.json()["results"]:
                if item["status"] != 202:
                    result.rejected += 1
                    if len(result.rejections) < 20:
                        result.rejections.append(item)
            return
        if r.status_code == 429 or r.status_code == 503:
            result.retries += 1
            body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
            failed = {item["index"] for item in body.get("results", [])
                      if item.get("status") == 503}
            if failed:  # everything else was acknowledged (or rejected: record those)
                for item in body["results"]:
                    if item["status"] not in (202, 503):
                        result.rejected += 1
                todo = [e for k, e in enumerate(todo) if k in failed]
            await asyncio.sleep(_retry_after(r))
            continue
        raise RuntimeError(f"ingest answered {r.status_code}: {r.text[:500]}")
    raise RuntimeError(f"ingest did not take {len(todo)} events after {attempts} attempts")


async def wait_for_day(client: httpx.AsyncClient, staging: str, day: date,
                       timeout: float = DAY_TIMEOUT_S) -> bool:
    """Until staging's calendar is on ``day`` and its end of day for ``day`` is recorded."""
    deadline = time.monotonic() + timeout
    wanted = day.isoformat()
    delay = 0.05
    while time.monotonic() < deadline:
        try:
            r = await client.get(f"{staging}/v1/portfolio")
            if r.status_code == 200:
                body = r.json()
                roll = body.get("roll_rates")
                if body.get("business_date") == wanted and (
                        roll is None or roll.get("to_business_date") == wanted):
                    return True
        except httpx.TransportError:
            pass
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    return False


async def play(*, loans: int, days: int, seed: int, speed: bool, urls: dict[str, str],
               api_key: str, bootstrap: str, contacts_topic: str,
               console: Console) -> PlayResult:
    began = time.monotonic()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"},
                                 timeout=httpx.Timeout(60.0)) as client:
        r = await client.get(f"{urls['staging']}/v1/portfolio")
        r.raise_for_status()
        start = start_after(r.json().get("business_date"))
        cfg = DemoConfig(loans=loans, days=days, seed=seed, start=start,
                         tag=f"D{start:%Y%m%d}S{seed}")
        result = PlayResult(cfg.tag, start, days)
        console.print(f"Demo run [bold]{cfg.tag}[/]: {loans:,} loans, {days} business days "
                      f"from {start} (seed {seed}{', speed' if speed else ''})")
        for c in roster(cfg):
            r = await client.put(f"{urls['staging']}/v1/collectors/{c.collector_id}",
                                 json=c.body())
            if r.status_code != 200:
                raise RuntimeError(f"PUT collector {c.collector_id}: {r.status_code} {r.text}")
        console.print(f"registered {len(roster(cfg))} collectors in teams negotiation, "
                      "intensive, legal, recovery")
        ingest = f"{urls['ingest']}/v1/events/batch"
        late: list[str] = []
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("days · {task.fields[events]:,} events · "
                              "{task.fields[rate]:,.0f} events/s · {task.fields[day]}"),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("playing", total=days, events=0, rate=0.0, day="")
            for i, batch in enumerate(generate(cfg)):
                *loan_events, close = batch
                day = date.fromisoformat(close["data"]["business_date"])
                for k in range(0, len(loan_events), BATCH):
                    await post_batch(client, ingest, loan_events[k:k + BATCH], result)
                await post_batch(client, ingest, [close], result)
                result.events += len(batch)
                if not speed or (i + 1) % SPEED_WAIT_EVERY == 0 or i + 1 == days:
                    if not await wait_for_day(client, urls["staging"], day):
                        late.append(day.isoformat())
                elapsed = time.monotonic() - began
                progress.update(task, advance=1, events=result.events,
                                rate=result.events / elapsed if elapsed else 0.0,
                                day=f"closed {day}")
        if late:
            console.print(f"[yellow]staging had not finished the end of day of {len(late)} "
                          f"day(s) within {DAY_TIMEOUT_S:.0f} s: {', '.join(late[:5])}[/]")
        if result.rejected:
            console.print(f"[red]{result.rejected} event(s) rejected by ingest[/], e.g. "
                          f"{orjson.dumps(result.rejections[:3]).decode()}")
        await asyncio.sleep(0 if speed else 3.0)  # let notifier and incentives catch up
        summary = await collect(client, urls, bootstrap, contacts_topic, f"{cfg.tag}-")
    result.seconds = time.monotonic() - began
    render(summary, console)
    console.print(f"played {result.events:,} events ({result.retries} retried requests) in "
                  f"{result.seconds:,.1f} s: {result.events / result.seconds:,.0f} events/s")
    return result
