"""The ``qingshou`` CLI: every command's help, ``loan show`` against a real local HTTP server,
the stack commands' wiring, and the dead-letter helpers that need no broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from shared import cli
from shared.ops import dlq, loans, stack
from tests.conftest import free_port

runner = CliRunner()

COMMANDS = [
    [], ["topics"], ["check"], ["bench"], ["dlq"], ["dlq", "list"], ["dlq", "replay"],
    ["stack"], ["stack", "up"], ["stack", "down"], ["stack", "status"], ["loan"],
    ["loan", "show"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "qingshou")
def test_help_of_every_command(args: list[str]) -> None:
    result = runner.invoke(cli.app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_root_lists_the_command_groups() -> None:
    out = runner.invoke(cli.app, ["--help"]).output
    for name in ("topics", "check", "bench", "dlq", "stack", "loan"):
        assert name in out


# -- loan show against a tiny local server ------------------------------------------------------

LOAN = {
    "loan_id": "LN-1", "borrower_id": "BR-1", "product": "consumer_loan", "currency": "CNY",
    "status": "active", "stage": "negotiation", "dpd": 42, "arrears": "1234.50",
    "oldest_due_date": "2026-10-17", "business_date": "2026-11-28", "flags": ["dispute"],
    "owner": {"collector_id": "RM-017", "team": "relationship"},
    "relationship_manager_id": "RM-017", "promises": [], "open_promises": [],
    "history": [{"stage": "early", "since": "2026-10-18"},
                {"stage": "negotiation", "since": "2026-11-17"}],
    "next_transition_date": "2026-12-17",
}
CONTACTS = {"items": [{"contact_id": "c-1", "loan_id": "LN-1", "borrower_id": "BR-1",
                       "channel": "sms", "template": "reminder", "stage": "early",
                       "trigger": "stage", "status": "deferred", "reason": "quiet_hours",
                       "scheduled_for": "2026-11-28T08:00:00+08:00",
                       "decided_at": "2026-11-27T22:30:00+08:00", "attempt": 1}],
            "next_cursor": None}


class _Api(BaseHTTPRequestHandler):
    """Answers like staging or notifier: a known loan, a 404 for others, 401 on a bad key."""

    routes: ClassVar[dict[str, dict]] = {}
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer qs-dev-admin":
            self._send(401, {"title": "invalid API key"})
        elif self.path in self.routes:
            self._send(200, self.routes[self.path])
        else:
            self._send(404, {"title": f"no loan at {self.path}"})

    def _send(self, code: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


def _serve(routes: dict[str, dict]) -> Iterator[tuple[int, list]]:
    handler = type("Api", (_Api,), {"routes": routes, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def staging() -> Iterator[tuple[int, list]]:
    yield from _serve({"/v1/loans/LN-1": LOAN})


@pytest.fixture
def notifier() -> Iterator[tuple[int, list]]:
    yield from _serve({"/v1/loans/LN-1/contacts": CONTACTS})


def _env(staging_port: int, notifier_port: int, **extra: str) -> dict[str, str]:
    return {"QS_STAGING_PORT": str(staging_port), "QS_NOTIFIER_PORT": str(notifier_port),
            "COLUMNS": "200", **extra}


def test_loan_show_prints_every_section(staging, notifier) -> None:
    (sport, sseen), (nport, nseen) = staging, notifier
    result = runner.invoke(cli.app, ["loan", "show", "LN-1"], env=_env(sport, nport))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "negotiation" in out and "1234.50 CNY" in out and "RM-017 (relationship)" in out
    assert "dispute" in out and "stage history" in out
    assert "quiet_hours" in out and "deferred" in out and "sms" in out
    assert sseen == [("/v1/loans/LN-1", "Bearer qs-dev-admin")]
    assert nseen == [("/v1/loans/LN-1/contacts", "Bearer qs-dev-admin")]


def test_loan_show_reports_404_and_a_service_that_is_down(staging) -> None:
    sport, _ = staging
    result = runner.invoke(cli.app, ["loan", "show", "LN-404"], env=_env(sport, free_port()))
    assert result.exit_code == 0, result.output
    assert "staging does not know loan LN-404" in result.output
    assert "notifier is down" in result.output


def test_loan_show_key_from_the_environment_and_json(staging, notifier) -> None:
    (sport, sseen), (nport, _) = staging, notifier
    result = runner.invoke(cli.app, ["loan", "show", "LN-1", "--json"],
                           env=_env(sport, nport, QS_API_KEY="qs-wrong"))
    assert result.exit_code == 0, result.output
    sections = orjson.loads(result.output)
    assert [(s["service"], s["status"], s["http_status"]) for s in sections] == [
        ("staging", "unauthorized", 401), ("notifier", "unauthorized", 401)]
    assert sseen == [("/v1/loans/LN-1", "Bearer qs-wrong")]


async def test_loan_report_classifies_answers_via_mock_transport() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "staging":
            return httpx.Response(500, json={"title": "boom"})
        raise httpx.ConnectTimeout("slow", request=request)

    sections = await loans.loan_report(
        "LN/1", {"staging": "http://staging", "notifier": "http://notifier"}, "k",
        transport=httpx.MockTransport(answer))
    assert [(s.status, s.http_status) for s in sections] == [("error", 500), ("down", None)]
    assert sections[0].url == "http://staging/v1/loans/LN%2F1"  # the id is one path segment
    assert sections[0].detail == "boom"


# -- stack ----------------------------------------------------------------------------------------

def test_stack_commands_map_to_the_project_scripts() -> None:
    assert stack.stack_command("up") == ["make", "up"]
    assert stack.stack_command("down") == ["make", "down"]
    assert stack.stack_command("up", services_only=True) == ["bash", "scripts/stack.sh", "start"]
    assert stack.stack_command("down", services_only=True) == ["bash", "scripts/stack.sh", "stop"]
    assert stack.stack_command("status") == ["bash", "scripts/stack.sh", "status"]
    assert (stack.ROOT / "scripts" / "stack.sh").is_file()
    with pytest.raises(ValueError):
        stack.stack_command("reboot")


def test_stack_runs_from_the_repo_root_and_passes_the_exit_code(monkeypatch) -> None:
    calls = []

    class Done:
        returncode = 3

    def fake_run(cmd, cwd, check):
        calls.append((cmd, cwd))
        return Done()

    monkeypatch.setattr(stack.subprocess, "run", fake_run)
    result = runner.invoke(cli.app, ["stack", "down", "--services-only"])
    assert result.exit_code == 3
    assert calls == [(["bash", "scripts/stack.sh", "stop"], stack.ROOT)]


def test_stack_status_really_runs_the_script() -> None:
    # read-only: prints every service's state, exit 0 (all ready) or 1 (not all)
    code = stack.run_stack("status")
    assert code in (0, 1)


# -- dead letters without a broker ---------------------------------------------------------------

def _letter(offset: int, reason: str, consumer: str = "staging", value: bytes | None = None):
    return dlq.DeadLetter(
        "p.loan-events.dlq", 1, offset, b"LN-1",
        value if value is not None else b'{"type": "repayment.received", "id": "e-1"}',
        {"qs-reason": reason, "qs-consumer": consumer, "qs-original-topic": "p.loan-events",
         "qs-original-partition": "2", "qs-original-offset": "77", "qs-detail": "x" * 100,
         "qs-dead-lettered-at": "2026-11-28T08:00:00+00:00",
         "content-type": "application/cloudevents+json"})


def test_dead_letter_fields_and_filters() -> None:
    a, b, c = _letter(5, "unknown_loan"), _letter(6, "schema_error"), _letter(
        7, "unknown_loan", "notifier", value=b"{not json")
    assert (a.event_type, a.event_id, a.original_partition, a.original_offset) == (
        "repayment.received", "e-1", 2, 77)
    assert c.event_type is None and c.event_id is None
    assert a.position == "p.loan-events.dlq:1:5"
    assert a.passthrough_headers() == [("content-type", b"application/cloudevents+json")]
    assert dlq.select([a, b, c], reason="unknown_loan") == [a, c]
    assert dlq.select([a, b, c], reason="unknown_loan", consumer="notifier") == [c]
    assert dlq.select([a, b, c], offsets={(1, 6)}) == [b]
    no_header = dlq.DeadLetter("p.calendar.dlq", 0, 0, None, b"", {})
    assert no_header.original_topic == "p.calendar"


def test_parse_offsets_and_dlq_names() -> None:
    assert dlq.parse_offsets(["0:5", "2:10"]) == {(0, 5), (2, 10)}
    with pytest.raises(ValueError):
        dlq.parse_offsets(["5"])
    assert dlq.dlq_topic("loan-events") == "loan-events.dlq"
    assert dlq.dlq_topic("loan-events.dlq") == "loan-events.dlq"
    assert cli._dlq_name("loan-events", "t1") == "t1.loan-events.dlq"
    assert cli._dlq_name("t1.loan-events", "t1") == "t1.loan-events.dlq"
    assert cli._dlq_name("loan-events", "") == "loan-events.dlq"


def test_replay_rejects_a_bad_offset() -> None:
    result = runner.invoke(cli.app, ["dlq", "replay", "loan-events", "--offset", "nope"])
    assert result.exit_code == 2
