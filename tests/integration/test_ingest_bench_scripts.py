"""The ingest benchmark's wrk scripts post what the benchmark claims: valid CloudEvents, every id
unique (a repeat would be answered as a duplicate and not published, which is not what the
benchmark measures), keys spread over many loans. wrk against a loopback server that keeps
the bodies."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from services.ingest.bench import LUA_DIR
from shared.events import parse_event

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")]


@pytest.fixture
def capture() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Keep(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(202)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keep)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", bodies
    finally:
        server.shutdown()


def _wrk(url: str, script: str) -> None:
    env = {**os.environ, "QS_BENCH_LUA_DIR": str(LUA_DIR), "QS_BENCH_RUN": "t",
           "QS_BENCH_BATCH": "1000"}
    subprocess.run(["wrk", "-t2", "-c2", "-d2s", "-s", str(LUA_DIR / script), url],
                   env=env, check=True, capture_output=True, timeout=60)


def test_batch_script_posts_unique_valid_events_over_all_loans(capture) -> None:
    url, bodies = capture
    _wrk(f"{url}/v1/events/batch", "batch.lua")
    events = [e for body in bodies for e in orjson.loads(body)]
    assert bodies and all(len(orjson.loads(b)) == 1000 for b in bodies)
    assert len({e["id"] for e in events}) == len(events)
    # each thread's requests cycle ten templates of 1,000 loans each
    busiest = -(-len(bodies) // 2)
    assert len({e["subject"] for e in events}) >= 1000 * min(10, busiest)
    for ev in events[::997]:
        assert parse_event(ev).key == ev["subject"].encode()


def test_single_script_posts_unique_valid_events(capture) -> None:
    url, bodies = capture
    _wrk(f"{url}/v1/events", "single.lua")
    events = [orjson.loads(b) for b in bodies]
    assert len(events) > 10 and len({e["id"] for e in events}) == len(events)
    assert all(parse_event(ev).type == "repayment.received" for ev in events[::50])
