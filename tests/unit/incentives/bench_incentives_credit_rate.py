"""How many `repayment.applied` credits per second the pure path handles.

credit_for_applied + the incremental scorecard update (ScorecardTally.add) per event, plus one
scorecard per touched (collector, period) at the end, as a consumed batch would publish.
Run: .venv/bin/python tests/unit/incentives/bench_incentives_credit_rate.py [events]
Prints the rate; asserts nothing about timing.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from services.incentives.domain import (
    DEFAULT_SCHEME,
    SchemeBook,
    ScorecardTally,
    credit_for_applied,
)

STAGES = ("early", "negotiation", "intensive", "legal", "write_off")


def make_events(count: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    start = date(2025, 1, 1)
    events = []
    for i in range(count):
        value_date = start + timedelta(days=rnd.randrange(90))
        arrears = Decimal(rnd.randrange(1, 500_000)) / 100
        events.append(
            {
                "specversion": "1.0",
                "id": f"evt-{i}",
                "source": "staging",
                "type": "repayment.applied",
                "subject": f"L{i % 50_000}",
                "data": {
                    "loan_id": f"L{i % 50_000}",
                    "payment_id": f"P{i}",
                    "amount": str(arrears),
                    "to_arrears": str(arrears),
                    "excess": "0.00",
                    "value_date": value_date.isoformat(),
                    "stage": rnd.choice(STAGES),
                    "dpd_before": 40,
                    "dpd_after": 0,
                    "collector_id": f"c{rnd.randrange(200)}",
                },
            }
        )
    return events


def run(events: list[dict]) -> float:
    book = SchemeBook([DEFAULT_SCHEME])
    tallies: dict[tuple[str, str], ScorecardTally] = {}
    began = time.perf_counter()
    for event in events:
        for entry in credit_for_applied(event):
            key = (entry.collector_id, entry.period)
            tally = tallies.get(key)
            if tally is None:
                tally = tallies[key] = ScorecardTally(key[0], key[1], "CNY", book)
            tally.add(entry)
    for tally in tallies.values():
        tally.scorecard()
    return len(events) / (time.perf_counter() - began)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    events = make_events(count)
    run(events[:5_000])  # warm-up
    rates = [run(events) for _ in range(3)]
    print(
        f"repayment.applied credits: {count} events, best {max(rates):,.0f}/s, "
        f"median {sorted(rates)[1]:,.0f}/s (pure path, one core)"
    )


if __name__ == "__main__":
    main()
