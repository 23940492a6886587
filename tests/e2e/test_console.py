"""The web console in a real browser against the running stack.

A loan is put through its stages via ingest (early → negotiation → intensive) and part-repaid
on the intensive collector's watch; the console runs as its own process pointed at the stack's
URLs, and headless Debian Chromium, driven by Playwright, signs in and loads every page in
English and Chinese, checking what each shows. Every request the browser makes must stay on
127.0.0.1 (anything else is aborted and fails the test). Screenshots go to
``test-results/console/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import ROOT, Stack, free_port
from tests.e2e.test_collection_journey import close, event

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "test-results" / "console"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def book(stack: Stack) -> dict[str, str]:
    """One loan in intensive with its collector (on the 2026-03 leaderboard), part-repaid."""
    run = uuid.uuid4().hex[:6]
    loan, borrower, rm, ci = f"L-{run}", f"B-{run}", f"rm-{run}", f"ci-{run}"
    r = stack.client.put(stack.url("staging", f"/v1/collectors/{ci}"),
                         json={"name": "Collector intensive", "team": "intensive",
                               "capacity": 50})
    assert r.status_code in (200, 201), r.text
    stack.post_event(event("borrower.updated", borrower, {
        "borrower_id": borrower, "name": "Wang Fang", "phone": "+8613900002222",
        "email": "wang.fang@example.com", "timezone": "Asia/Shanghai", "language": "zh-CN",
        "opted_out_channels": [], "vulnerable": False}))
    stack.post_event(event("loan.opened", loan, {
        "loan_id": loan, "borrower_id": borrower, "product": "consumer_loan",
        "currency": "CNY", "principal": "50000.00", "opened_on": "2026-01-02",
        "relationship_manager_id": rm}))
    stack.post_event(event("payment.missed", loan, {
        "loan_id": loan, "instalment_no": 1, "due_date": "2026-01-05",
        "amount_due": "1000.00", "amount_unpaid": "1000.00"}, "2026-01-05"))

    def reaches(stage: str):
        def check() -> bool:
            view = stack.get("staging", f"/v1/loans/{loan}").json()
            return view.get("stage") == stage
        return check

    for day, stage in (("2026-01-06", "early"), ("2026-02-05", "negotiation"),
                       ("2026-03-07", "intensive")):
        close(stack, day)
        stack.wait_for(reaches(stage))
    stack.post_event(event("repayment.received", loan, {
        "loan_id": loan, "payment_id": f"P-{run}", "amount": "400.00", "currency": "CNY",
        "value_date": "2026-03-07", "channel": "transfer"}, "2026-03-07"))
    stack.wait_for(lambda: stack.get("staging", f"/v1/loans/{loan}").json()["arrears"]
                   == "600.00")

    def on_leaderboard() -> bool:
        r = stack.get("incentives", "/v1/leaderboard", period="2026-03", team="intensive")
        return any(i["collector_id"] == ci for i in r.json()["items"])

    stack.wait_for(on_leaderboard)
    # roll rates need two completed ends of day (staging records each run)
    stack.wait_for(lambda: stack.get("staging", "/v1/portfolio").json()["roll_rates"],
                   timeout=90)
    stack.wait_for(lambda: stack.get("notifier", f"/v1/loans/{loan}/contacts").json()["items"])
    return {"loan": loan, "collector": ci}


@pytest.fixture(scope="module")
def console(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, QS_PORT=str(port), QS_HOST="127.0.0.1",
               QS_CONSOLE_STAGING_URL=stack.urls["staging"],
               QS_CONSOLE_NOTIFIER_URL=stack.urls["notifier"],
               QS_CONSOLE_INCENTIVES_URL=stack.urls["incentives"],
               QS_CONSOLE_API_KEY="qs-dev-read")
    log_path = tmp_path_factory.mktemp("console") / "console.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.console"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            return httpx.get(f"{url}/readyz", timeout=3).status_code == 200

        stack.wait_for(ready, timeout=60)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_console_pages_in_a_real_browser(stack: Stack, book: dict[str, str], console: str):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: Debian's chromium is needed (bash scripts/deps.sh)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    loan, collector = book["loan"], book["collector"]
    seen: list[str] = []
    outside: list[str] = []

    def guard(route, request) -> None:  # type: ignore[no-untyped-def]
        seen.append(request.url)
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "about:")) or host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.route("**/*", guard)

            # not signed in: the login page; a wrong key is refused; the read key signs in
            page.goto(f"{console}/portfolio?lang=en")
            assert "/login" in page.url
            page.fill("#api_key", "not-a-key")
            page.click("button[type=submit]")
            assert page.locator(".alert").inner_text() == "This key is not valid."
            page.fill("#api_key", "qs-dev-read")
            page.click("form.login button[type=submit]")
            page.wait_for_url("**/portfolio**")
            cookie = next(c for c in page.context.cookies() if c["name"] == "qs_console_key")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

            for lang in ("en", "zh-CN"):
                zh = lang == "zh-CN"

                def shot(name: str, lang: str = lang) -> None:
                    page.screenshot(path=str(SHOTS / f"{name}-{lang}.png"), full_page=True)

                page.goto(f"{console}/portfolio?lang={lang}")
                assert page.locator("html").get_attribute("lang") == lang
                assert page.locator("h1").inner_text() == ("按阶段的资产组合" if zh
                                                           else "Portfolio by stage")
                row = page.locator(
                    "#portfolio-table tr[data-product=consumer_loan][data-stage=intensive]")
                cells = row.locator("td").all_inner_texts()
                assert cells[1] == ("强化催收" if zh else "Intensive")
                assert int(cells[2]) >= 1 and float(cells[3]) >= 600
                assert page.locator("svg.chart rect.bar").count() >= 1
                # the trend: one line per overdue stage across the closed business days
                assert page.locator(".trend svg polyline.series").count() >= 1
                shot("portfolio")

                page.goto(f"{console}/roll-rates?lang={lang}")
                assert page.locator("#roll-heatmap svg rect.cell").count() >= 1
                shot("roll-rates")

                page.goto(f"{console}/contacts?lang={lang}")
                assert page.locator("#contacts-table tbody tr").count() >= 1
                assert page.locator(f"a[href*='{loan}']").count() == 1
                shot("contacts")

                page.goto(f"{console}/leaderboard?lang={lang}&period=2026-03&team=intensive")
                board = page.locator(f"#leaderboard-table tr[data-collector='{collector}']")
                texts = board.locator("td").all_inner_texts()
                assert texts[0] == "1" and texts[2] == ("强化催收组" if zh else "Intensive")
                shot("leaderboard")
                page.select_option("#team", "legal")  # the select submits the form by script
                page.wait_for_url("**team=legal**")
                assert board.count() == 0
                page.goto(f"{console}/collectors/{collector}?lang={lang}&period=2026-03")
                assigned = page.locator("#scorecard-table tr[data-field=arrears_assigned] td")
                assert assigned.last.inner_text() == "1000.00"

                page.goto(f"{console}/loans/{loan}?lang={lang}")
                assert page.locator("#loan-stage").get_attribute("data-stage") == "intensive"
                assert page.locator("#loan-stage").inner_text() == ("强化催收" if zh
                                                                    else "Intensive")
                assert collector in page.locator("#loan-owner").inner_text()
                assert page.locator("#loan-arrears").inner_text() == "600.00 CNY"
                history = page.locator("#loan-history tbody tr")
                assert history.count() >= 2
                assert history.last.locator("td").nth(2).inner_text() == (
                    "强化催收" if zh else "Intensive")
                assert page.locator("#loan-contacts tbody tr").count() >= 1
                shot("loan")

                page.goto(f"{console}/loans?lang={lang}&stage=intensive")
                assert page.locator(f"#loans-table a[href*='{loan}']").count() == 1

            # the language switch link goes to the other language of the same page
            page.goto(f"{console}/loans/{loan}?lang=en")
            page.click("#lang-switch")
            page.wait_for_url("**lang=zh-CN**")
            assert page.locator("h1").inner_text() == f"贷款 {loan}"

            page.click("form.logout button")
            page.wait_for_url("**/login**")
        finally:
            browser.close()

    assert seen and not outside, outside
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in seen if u.startswith("http"))
    assert {f"{n}-{lang}.png" for n in ("portfolio", "roll-rates", "contacts", "leaderboard",
                                        "loan") for lang in ("en", "zh-CN")} <= {
        f.name for f in SHOTS.iterdir()}


def test_console_says_so_when_a_service_is_down(stack: Stack, book: dict[str, str]):
    """A console whose incentives URL points at nothing: a message on the page, not a 500."""
    dead = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    env = dict(os.environ, QS_PORT=str(port), QS_CONSOLE_STAGING_URL=stack.urls["staging"],
               QS_CONSOLE_NOTIFIER_URL=stack.urls["notifier"], QS_CONSOLE_INCENTIVES_URL=dead)
    proc = subprocess.Popen([sys.executable, "-m", "services.console"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        stack.wait_for(lambda: httpx.get(f"{url}/healthz", timeout=3).status_code == 200)
        assert httpx.get(f"{url}/readyz").json()["checks"]["incentives_reachable"] is False
        auth = {"Authorization": "Bearer qs-dev-read"}
        board = httpx.get(f"{url}/leaderboard?lang=en", headers=auth)
        assert board.status_code == 200
        assert "The incentives service is unavailable" in board.text
        loan = httpx.get(f"{url}/loans/{book['loan']}?lang=en", headers=auth)
        assert loan.status_code == 200 and 'data-stage="intensive"' in loan.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
