"""Parse rate of `parse_event` on one repayment.received message (not a test; prints numbers).

    .venv/bin/python tests/unit/shared/bench_parse_event.py [iterations]

Single-threaded; run it on a quiet machine, the numbers swing with load.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import orjson

from shared.events import parse_event, sample_cloudevent


def _rate(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    raw = orjson.dumps(sample_cloudevent("repayment.received"))
    event = parse_event(raw)
    _rate(lambda: parse_event(raw), 5_000)  # warm-up
    parse = [_rate(lambda: parse_event(raw), n) for _ in range(5)]
    dump = [_rate(event.to_json, n) for _ in range(5)]
    print(f"message: {len(raw)} bytes, {n:,} calls x 5 rounds, one core")
    print(f"parse_event: best {max(parse):,.0f}/s, median {statistics.median(parse):,.0f}/s")
    print(f"to_json:     best {max(dump):,.0f}/s, median {statistics.median(dump):,.0f}/s")


if __name__ == "__main__":
    main()
