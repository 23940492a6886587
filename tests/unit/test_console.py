"""The console's pure pieces (charts, colour scale, catalogue, language) and its pages against
fake upstreams (httpx.MockTransport): authentication, rendering, and an upstream that is down."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.console import charts
from services.console.app import COOKIE, create_app, safe_next
from services.console.i18n import LANGUAGES, MESSAGES, label, negotiate, translator
from services.console.settings import ConsoleSettings

SVG = "{http://www.w3.org/2000/svg}"


# --- charts ---------------------------------------------------------------------------------


def test_bar_chart_is_well_formed_svg_with_proportional_bars():
    svg = charts.bar_chart([("early", 10), ("legal", 5), ("current", 0)], title="Loans")
    root = ET.fromstring(str(svg))
    bars = root.findall(f"{SVG}rect")
    heights = [float(b.get("height")) for b in bars]
    assert len(bars) == 3
    assert heights[0] == pytest.approx(2 * heights[1])
    assert heights[2] == 0
    assert root.find(f"{SVG}title").text == "Loans"


def test_bar_chart_escapes_labels_and_survives_odd_values():
    svg = str(charts.bar_chart([("<script>x</script>", "abc"), ("a&b", -3)], title="t<"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ET.fromstring(svg)  # still well-formed
    assert all(float(b.get("height")) == 0 for b in root.findall(f"{SVG}rect"))
    assert ET.fromstring(str(charts.bar_chart([], title="empty"))) is not None


def test_bar_chart_formats_values():
    svg = str(charts.bar_chart([("x", "1234.5")], title="t", fmt=lambda v: f"{v:,.2f}"))
    assert "1,234.50" in svg


def test_heat_colour_runs_from_white_to_deep_red_and_clamps():
    assert charts.heat_colour(0) == "#ffffff"
    assert charts.heat_colour(1) == "#a50f15"
    assert charts.heat_colour(-2) == charts.heat_colour(0)
    assert charts.heat_colour(7) == charts.heat_colour(1)
    assert charts.heat_colour("not a number") == "#ffffff"
    assert re.fullmatch(r"#[0-9a-f]{6}", charts.heat_colour("0.3333"))


def test_heat_colour_intensity_never_decreases_with_the_rate():
    def darkness(colour: str) -> int:
        return 3 * 255 - sum(int(colour[i:i + 2], 16) for i in (1, 3, 5))

    levels = [darkness(charts.heat_colour(i / 20)) for i in range(21)]
    assert levels == sorted(levels) and levels[0] < levels[-1]


def test_ink_is_readable_on_the_cell():
    assert charts.ink_for(charts.heat_colour(0)) == "#000000"
    assert charts.ink_for(charts.heat_colour(1)) == "#ffffff"


def test_heat_map_colours_each_cell_by_its_rate():
    rates = {("early", "early"): 0.75, ("early", "current"): 0.25}
    svg = charts.heat_map(["early"], ["current", "early"],
                          lambda r, c: rates.get((r, c)), title="Roll")
    cells = ET.fromstring(str(svg)).findall(f"{SVG}rect")
    assert [c.get("fill") for c in cells] == [charts.heat_colour(0.25), charts.heat_colour(0.75)]
    assert "75.0%" in str(svg) and "25.0%" in str(svg)


# --- i18n -----------------------------------------------------------------------------------


def test_every_key_exists_in_both_languages_and_is_not_empty():
    assert set(MESSAGES) == set(LANGUAGES)
    en, zh = set(MESSAGES["en"]), set(MESSAGES["zh-CN"])
    assert en == zh, {"missing in zh-CN": en - zh, "missing in en": zh - en}
    for lang, table in MESSAGES.items():
        for key, text in table.items():
            assert text.strip(), (lang, key)


def test_placeholders_match_between_languages():
    names = re.compile(r"{(\w+)}")
    for key, text in MESSAGES["en"].items():
        assert set(names.findall(text)) == set(names.findall(MESSAGES["zh-CN"][key])), key


def test_every_template_key_is_in_the_catalogue():
    from services.console.app import HERE

    used = set()
    for path in (HERE / "templates").glob("*.html"):
        used |= set(re.findall(r"""t\(["']([\w.]+)["']""", path.read_text(encoding="utf-8")))
    assert used and used <= set(MESSAGES["en"]), used - set(MESSAGES["en"])


@pytest.mark.parametrize(("query", "header", "expected"), [
    ("zh-CN", "en", "zh-CN"),
    ("fr", "zh-CN,zh;q=0.9", "zh-CN"),
    (None, "en-GB,en;q=0.8,zh;q=0.5", "en"),
    (None, "zh-TW;q=0.9, en;q=0.5", "zh-CN"),
    (None, "fr-FR, de;q=0.7", "en"),
    (None, "en;q=0, zh", "zh-CN"),
    (None, None, "en"),
    (None, "zh;q=notanumber, en", "en"),
])
def test_language_negotiation(query, header, expected):
    assert negotiate(query, header) == expected


def test_translator_formats_and_labels_fall_back_to_the_raw_value():
    assert translator("zh-CN")("loan.title", loan_id="L-1") == "贷款 L-1"
    assert label("zh-CN", "stage", "legal") == "法律"
    assert label("en", "stage", "brand_new") == "brand_new"
    assert label("en", "stage", None) == ""


def test_safe_next_never_leaves_the_console():
    assert safe_next("/loans/L-1?lang=en") == "/loans/L-1?lang=en"
    for bad in ("https://evil.example", "//evil.example", "/\\evil", None, ""):
        assert safe_next(bad) == "/portfolio"


# --- pages against fake upstreams -----------------------------------------------------------

LOAN = {"loan_id": "L-1", "borrower_id": "B-1", "product": "consumer_loan", "currency": "CNY",
        "status": "open", "stage": "intensive", "dpd": 61, "arrears": "1000.00",
        "business_date": "2026-03-07", "flags": [], "relationship_manager_id": "rm-1",
        "owner": {"collector_id": "ci-1", "team": "intensive"},
        "promises": [{"promise_id": "P1", "collector_id": "ci-1", "amount": "500.00",
                      "due_on": "2026-03-10", "made_on": "2026-03-07", "seq": 1,
                      "status": "open", "paid": "0", "resolved_on": None}],
        "open_promises": [], "next_transition_date": None,
        "history": [{"from": "current", "to": "early", "dpd": 1, "reason": "missed_payment",
                     "business_date": "2026-01-06"}]}


def fake_services(request: httpx.Request) -> httpx.Response:
    assert request.headers["authorization"] == "Bearer qs-dev-read"
    path = request.url.path
    if path == "/v1/portfolio":
        return httpx.Response(200, json={
            "business_date": "2026-03-07",
            "products": {"consumer_loan": {"intensive": {"count": 3, "arrears": "3000.00"},
                                           "early": {"count": 7, "arrears": "700.00"}}},
            "roll_rates": {"from_business_date": "2026-03-06", "to_business_date": "2026-03-07",
                           "base_counts": {"early": 8},
                           "matrix": {"early": {"early": "0.8750", "negotiation": "0.1250"}}}})
    if path == "/v1/loans":
        return httpx.Response(200, json={"items": [
            {k: LOAN[k] for k in ("loan_id", "product", "status", "stage", "dpd", "arrears",
                                  "currency")} | {"collector_id": "ci-1", "team": "intensive"}],
            "next_cursor": None})
    if path == "/v1/loans/L-1":
        return httpx.Response(200, json=LOAN)
    if path.startswith("/v1/loans/") and path.endswith("/contacts"):
        return httpx.Response(200, json={"items": [
            {"contact_id": "c1", "channel": "sms", "status": "sent", "trigger": "stage_entry",
             "stage": "early", "reason": "queued_for_provider",
             "decided_at": "2026-01-07T09:00:00+08:00"},
            {"contact_id": "c2", "channel": "voice", "status": "deferred", "trigger": "cadence",
             "stage": "early", "reason": "quiet_hours",
             "decided_at": "2026-01-08T22:00:00+08:00"}], "next_cursor": None})
    if path == "/v1/contacts/summary":
        return httpx.Response(200, json={"since": "2016-01-01T00:00:00+00:00", "contacts": 3,
                                         "items": [
            {"channel": "sms", "status": "sent", "reason": "provider_accepted", "count": 2},
            {"channel": "voice", "status": "deferred", "reason": "quiet_hours", "count": 1}]})
    if path == "/v1/leaderboard":
        assert request.url.params["period"] == "2026-03"
        return httpx.Response(200, json={"period": "2026-03", "team": None, "items": [
            {"rank": 1, "collector_id": "ci-1", "team": "intensive",
             "composite_score": "0.7100", "payout": "12.00"}], "next_cursor": None})
    if path == "/v1/scorecards/ci-1":
        return httpx.Response(200, json={"collector_id": "ci-1", "recovered": "400.00"})
    return httpx.Response(404, json={"title": "not found"})


def client(handler: Any = fake_services) -> TestClient:
    app = create_app(ConsoleSettings(_env_file=None),
                     transport=httpx.MockTransport(handler) if handler else None)
    return TestClient(app, base_url="http://127.0.0.1:8006")


def signed_in(handler: Any = fake_services) -> TestClient:
    c = client(handler)
    r = c.post("/login", data={"api_key": "qs-dev-read", "next": "/portfolio"},
               follow_redirects=False)
    assert r.status_code == 303
    return c


def test_pages_need_a_key_like_the_apis():
    c = client()
    r = c.get("/portfolio", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fportfolio")
    assert c.get("/portfolio", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get("/portfolio",
                 headers={"Authorization": "Bearer qs-dev-provider"}).status_code == 403
    assert c.get("/portfolio",
                 headers={"Authorization": "Bearer qs-dev-read"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # open, like every service's


def test_login_sets_an_httponly_samesite_strict_cookie_and_logout_clears_it():
    c = client()
    bad = c.post("/login", data={"api_key": "wrong"}, follow_redirects=False)
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    r = c.post("/login", data={"api_key": "qs-dev-read", "next": "//evil.example"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/portfolio"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=qs-dev-read")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert c.get("/portfolio").status_code == 200
    out = c.post("/logout", follow_redirects=False)
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_portfolio_and_roll_rates_render_tables_and_svg():
    c = signed_in()
    page = c.get("/portfolio?lang=en")
    assert page.status_code == 200 and "<svg" in page.text
    assert "3000.00" in page.text and "Consumer loan" in page.text
    assert "snapshot" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    zh = c.get("/portfolio", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "消费贷款" in zh.text and 'lang="zh-CN"' in zh.text
    roll = c.get("/roll-rates?lang=en")
    assert charts.heat_colour(0.875) in roll.text and "87.5%" in roll.text


def test_loan_contacts_and_leaderboard_pages():
    c = signed_in()
    loan = c.get("/loans/L-1?lang=en")
    assert loan.status_code == 200
    assert "Intensive" in loan.text and "ci-1" in loan.text and "rm-1" in loan.text
    assert "quiet_hours" in loan.text and "500.00" in loan.text
    assert c.get("/loans/nope?lang=en").status_code == 404
    contacts = c.get("/contacts?lang=zh-CN")
    assert "短信" in contacts.text and "已延后" in contacts.text
    board = c.get("/leaderboard?period=2026-03&lang=en")
    assert 'data-collector="ci-1"' in board.text and "12.00" in board.text
    assert "400.00" in c.get("/collectors/ci-1?period=2026-03").text
    assert c.get("/loans?loan_id=L-1", follow_redirects=False).headers["location"].startswith(
        "/loans/L-1")


def test_an_upstream_that_is_down_is_a_message_not_a_500():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    c = signed_in(down)
    for path in ("/portfolio", "/roll-rates", "/contacts", "/leaderboard", "/loans",
                 "/loans/L-1", "/collectors/ci-1"):
        r = c.get(path + "?lang=en")
        assert r.status_code == 200, (path, r.status_code)
        assert "service is unavailable" in r.text, path
    assert c.get("/readyz").status_code == 503


def test_readyz_checks_the_three_upstreams():
    c = client(lambda request: httpx.Response(200, json={"status": "ok"}))
    body = c.get("/readyz").json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"staging_reachable", "notifier_reachable",
                                   "incentives_reachable"}
    assert "qs_console_upstream_requests_total" in c.get("/metrics").text


def test_line_chart_draws_one_escaped_series_per_stage():
    from services.console.charts import line_chart

    svg = str(line_chart(["2026-01-01", "2026-01-02", "2026-01-03"],
                         [("early", [1, 2, 3]), ("<legal>", [0, 0, 1])], title="trend"))
    assert svg.count("<polyline") == 2
    assert "&lt;legal&gt;" in svg and "<legal>" not in svg
