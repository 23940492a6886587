"""Decisions per second in process: `.venv/bin/python -m tests.unit.notifier.bench_decisions`.

Not a test (no timing is asserted); a loan with 20 contacts over the last 14 days, requests
on every channel at times spread over a week, so sends, deferrals and suppressions all occur.
"""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.notifier.domain.decision import decide
from services.notifier.domain.model import BorrowerProfile, ContactRecord, ContactRequest
from services.notifier.domain.policy import DEFAULT_POLICY

CHANNELS = ("sms", "email", "voice", "letter")


def _cases(n: int = 1000):
    start = datetime(2026, 10, 20, tzinfo=UTC)
    borrowers = [BorrowerProfile(f"B{i}", tz, vulnerable=(i == 3)) for i, tz in enumerate(
        ["Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata"])]
    history = [ContactRecord(CHANNELS[i % 4], start - timedelta(hours=16 * i + 3),
                             ("sent", "delivered", "failed")[i % 3]) for i in range(20)]
    cases = []
    for i in range(n):
        now = start + timedelta(minutes=97 * i)
        channel = CHANNELS[i % 4]
        req = ContactRequest(
            contact_id=f"c{i}", loan_id="L1", borrower_id="B", channel=channel,
            template=f"intensive.{channel}", trigger="cadence", stage="intensive",
            created_at=now, requires_stage="intensive", loan_stage_now="intensive")
        cases.append((req, borrowers[i % 4], frozenset(), history, now))
    return cases


def main() -> None:
    cases = _cases()
    kinds = Counter(decide(*c, DEFAULT_POLICY).kind for c in cases)
    rounds = 30
    began = time.perf_counter()
    for _ in range(rounds):
        for req, borrower, flags, history, now in cases:
            decide(req, borrower, flags, history, now, DEFAULT_POLICY)
    elapsed = time.perf_counter() - began
    total = rounds * len(cases)
    print(f"{total} decisions in {elapsed:.3f} s: {total / elapsed:,.0f} decisions/s; "
          f"mix {dict(kinds)}")


if __name__ == "__main__":
    main()
