"""The console's FastAPI app: authentication, the pages, health, readiness and metrics.

Access is protected like the services' APIs, with the same keys (``QS_API_KEYS``, the shared
:class:`~shared.auth.KeyRing`) and the scope ``read``. A key is accepted

- as ``Authorization: Bearer <key>`` (scripts, monitoring), or
- from the login form (``POST /login``), which stores it in the cookie ``qs_console_key``:
  HttpOnly (no script reads it), SameSite=Strict (never sent on a request started by another
  site, so no cross-site request forgery), Path=/, no expiry (gone when the browser closes),
  ``Secure`` when ``QS_CONSOLE_COOKIE_SECURE=true`` (set it behind TLS). ``POST /logout``
  deletes it. The key is checked again on every request, so revoking it takes effect at once.

A browser without a valid cookie is sent to the login page; a bad bearer key gets 401 and a key
without ``read`` gets 403, as from the APIs. Data comes from the services with the console's
own key (``QS_CONSOLE_API_KEY``), never from their tables.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.console import charts
from services.console.i18n import LANGUAGES, label, negotiate, translator
from services.console.settings import ConsoleSettings
from services.console.upstream import Reply, Upstreams
from shared.api import ops_router
from shared.auth import KeyRing, Principal

HERE = Path(__file__).resolve().parent
COOKIE = "qs_console_key"
STAGES = ("current", "early", "negotiation", "intensive", "legal", "write_off", "special")
TEAMS = ("negotiation", "intensive", "legal", "recovery")
CHANNELS = ("sms", "email", "voice", "letter")
CONTACT_STATUSES = ("sent", "delivered", "failed", "deferred", "suppressed")
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class LoginRequired(Exception):
    """No valid key from a browser: go to the login page."""


class Denied(Exception):
    def __init__(self, status: int):
        self.status = status


def stage_order(stages: Any) -> list[str]:
    """Stages in collection order; unknown ones after, alphabetically."""
    seen = set(stages)
    return [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))


def to_decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def safe_next(value: str | None) -> str:
    """A local path to return to after login (never another site)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/portfolio"


def create_app(settings: ConsoleSettings | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    upstreams = Upstreams(settings.upstreams, settings.console_api_key,
                          settings.console_timeout_s, transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await upstreams.aclose()

    app = FastAPI(title="Qingshou console", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.keyring = KeyRing(settings.api_keys)
    app.state.upstreams = upstreams
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    app.include_router(ops_router(upstreams.reachable))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # --- authentication ------------------------------------------------------------------

    def who(request: Request) -> Principal:
        ring: KeyRing = request.app.state.keyring
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, key = header.partition(" ")
            found = ring.authenticate(key.strip()) if scheme.lower() == "bearer" else None
            if found is None:
                raise Denied(401)
        else:
            found = ring.authenticate(request.cookies.get(COOKIE))
            if found is None:
                raise LoginRequired
        if not found.allows("read"):
            raise Denied(403)
        return found

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        lang = lang_of(request)
        return RedirectResponse(f"/login?{urlencode({'next': target, 'lang': lang})}", 303)

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> Response:
        t = translator(lang_of(request))
        if exc.status == 401:
            return PlainTextResponse("a valid bearer API key is required", 401,
                                     headers={"WWW-Authenticate": "Bearer"})
        return PlainTextResponse(t("error.forbidden"), 403)

    # --- rendering ---------------------------------------------------------------------------

    def lang_of(request: Request) -> str:
        return negotiate(request.query_params.get("lang"),
                         request.headers.get("accept-language"))

    def render(request: Request, template: str, status: int = 200,
               **values: Any) -> HTMLResponse:
        lang = lang_of(request)
        t = translator(lang)

        def link(path: str, **params: Any) -> str:
            query = {k: v for k, v in params.items() if v not in (None, "")}
            query["lang"] = lang
            return f"{path}?{urlencode(query)}"

        other = next(x for x in LANGUAGES if x != lang)
        switch = dict(request.query_params)
        switch["lang"] = other
        errors = [t("error.upstream", service=r.service, detail=r.error)
                  for r in values.pop("replies", []) if r is not None and r.error]
        html = env.get_template(template).render(
            lang=lang, t=t, lab=lambda kind, raw: label(lang, kind, raw), link=link,
            switch_url=f"{request.url.path}?{urlencode(switch)}", path=request.url.path,
            errors=list(dict.fromkeys(errors)), quote=lambda v: quote(str(v), safe=""),
            **values)
        return HTMLResponse(html, status_code=status,
                            headers={"Content-Language": lang})

    # --- login -------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
        return render(request, "login.html", next=safe_next(next), problem=None)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("api_key") or [""])[0].strip()
        target = safe_next((form.get("next") or [""])[0])
        found = request.app.state.keyring.authenticate(key)
        if found is None or not found.allows("read"):
            problem = "login.invalid" if found is None else "login.forbidden"
            return render(request, "login.html", status=401 if found is None else 403,
                          next=target, problem=problem)
        response = RedirectResponse(target, 303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/",
                            secure=settings.console_cookie_secure)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        response = RedirectResponse(f"/login?lang={lang_of(request)}", 303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=settings.console_cookie_secure)
        return response

    # --- pages -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        who(request)
        return RedirectResponse(f"/portfolio?lang={lang_of(request)}", 303)

    @app.get("/portfolio", response_class=HTMLResponse)
    async def portfolio(request: Request) -> HTMLResponse:
        who(request)
        t = translator(lang_of(request))
        reply = await upstreams.get("staging", "/v1/portfolio")
        products: dict[str, dict[str, Any]] = (reply.data or {}).get("products") or {}
        stages = stage_order({s for cells in products.values() for s in cells})
        rows, loans, arrears = [], Counter[str](), dict.fromkeys(stages, Decimal(0))
        for product in sorted(products):
            for stage in stage_order(products[product]):
                cell = products[product][stage]
                rows.append({"product": product, "stage": stage, "count": cell["count"],
                             "arrears": cell["arrears"]})
                loans[stage] += int(cell["count"])
                arrears[stage] += to_decimal(cell["arrears"])
        lang = lang_of(request)

        def stage_name(stage: str) -> str:
            return label(lang, "stage", stage)

        loans_svg = charts.bar_chart([(stage_name(s), loans[s]) for s in stages],
                                     title=t("portfolio.loans_chart")) if stages else None
        arrears_svg = charts.bar_chart([(stage_name(s), arrears[s]) for s in stages],
                                       title=t("portfolio.arrears_chart"),
                                       fmt=lambda v: f"{v:,.2f}") if stages else None
        totals = [{"stage": s, "count": loans[s], "arrears": f"{arrears[s]:.2f}"}
                  for s in stages]
        trend = await upstreams.get("staging", "/v1/portfolio/history?limit=60")
        days = (trend.data or {}).get("items") or []
        # delinquent stages only: the current book would flatten every other line
        trend_stages = [s for s in stage_order({s for d in days for s in d["stages"]})
                        if s != "current"]
        trend_svg = charts.line_chart(
            [d["business_date"] for d in days],
            [(stage_name(s), [d["stages"].get(s, {}).get("count", 0) for d in days])
             for s in trend_stages],
            title=t("portfolio.trend")) if len(days) > 1 and trend_stages else None
        return render(request, "portfolio.html", replies=[reply], rows=rows, totals=totals,
                      business_date=(reply.data or {}).get("business_date"),
                      loans_svg=loans_svg, arrears_svg=arrears_svg, loaded=reply.ok,
                      trend_svg=trend_svg)

    @app.get("/roll-rates", response_class=HTMLResponse)
    async def roll_rates(request: Request) -> HTMLResponse:
        who(request)
        lang = lang_of(request)
        t = translator(lang)
        reply = await upstreams.get("staging", "/v1/portfolio")
        roll = (reply.data or {}).get("roll_rates")
        svg = None
        rows: list[str] = []
        base: dict[str, int] = {}
        if roll:
            matrix: dict[str, dict[str, str]] = roll["matrix"]
            rows = stage_order(matrix)
            cols = stage_order(set(rows) | {c for r in matrix.values() for c in r})
            base = roll.get("base_counts") or {}

            def rate(row: str, col: str) -> float | None:
                return float(to_decimal(matrix.get(row, {}).get(col, "0")))

            svg = charts.heat_map(rows, cols, rate, title=t("roll.title"),
                                  row_label=lambda s: label(lang, "stage", s),
                                  col_label=lambda s: label(lang, "stage", s))
        return render(request, "roll_rates.html", replies=[reply], roll=roll, svg=svg,
                      rows=rows, base=base, loaded=reply.ok)

    @app.get("/contacts", response_class=HTMLResponse)
    async def contacts(request: Request, stage: str | None = None) -> HTMLResponse:
        who(request)
        stage = stage if stage in STAGES else None
        lang = lang_of(request)
        t = translator(lang)
        listing = await upstreams.get("staging", "/v1/loans", stage=stage,
                                      limit=settings.console_contact_sample)
        loans = (listing.data or {}).get("items") or []
        replies: list[Reply] = [listing]
        logs = await asyncio.gather(*(
            upstreams.get("notifier", f"/v1/loans/{quote(loan['loan_id'], safe='')}/contacts",
                          limit=500) for loan in loans))
        replies += logs
        # the whole book's contacts, each at its latest status, from the notifier's summary
        summary = await upstreams.get("notifier", "/v1/contacts/summary", days=3660)
        replies.append(summary)
        tally: Counter[tuple[str, str]] = Counter()
        for row in (summary.data or {}).get("items") or []:
            tally[(row["channel"], row["status"])] += int(row["count"])
        per_loan = []
        for loan, log in zip(loans, logs, strict=True):
            items = (log.data or {}).get("items") or []
            per_loan.append({**loan, "contacts": len(items) if log.ok else None})
        channels = [c for c in CHANNELS if any(k[0] == c for k in tally)] + sorted(
            {k[0] for k in tally} - set(CHANNELS))
        statuses = [s for s in CONTACT_STATUSES if any(k[1] == s for k in tally)] + sorted(
            {k[1] for k in tally} - set(CONTACT_STATUSES))
        by_channel = {c: sum(n for (ch, _), n in tally.items() if ch == c) for c in channels}
        svg = charts.bar_chart([(label(lang, "channel", c), by_channel[c]) for c in channels],
                               title=t("contacts.chart")) if channels else None
        return render(request, "contacts.html", replies=replies, stage=stage, stages=STAGES,
                      loans=per_loan, tally=tally, channels=channels, statuses=statuses,
                      by_channel=by_channel, total=sum(tally.values()), svg=svg)

    @app.get("/leaderboard", response_class=HTMLResponse)
    async def leaderboard(request: Request, period: str | None = None,
                          team: str | None = None) -> HTMLResponse:
        who(request)
        period = period if period and PERIOD.match(period) else (
            datetime.now(UTC).strftime("%Y-%m"))
        team = team if team in TEAMS else None
        reply = await upstreams.get("incentives", "/v1/leaderboard", period=period, team=team,
                                    limit=200)
        items = (reply.data or {}).get("items") or []
        return render(request, "leaderboard.html", replies=[reply], period=period, team=team,
                      teams=TEAMS, items=items, loaded=reply.ok)

    @app.get("/collectors/{collector_id}", response_class=HTMLResponse)
    async def scorecard(request: Request, collector_id: str,
                        period: str | None = None) -> HTMLResponse:
        who(request)
        period = period if period and PERIOD.match(period) else (
            datetime.now(UTC).strftime("%Y-%m"))
        reply = await upstreams.get("incentives",
                                    f"/v1/scorecards/{quote(collector_id, safe='')}",
                                    period=period)
        return render(request, "scorecard.html", status=404 if reply.status == 404 else 200,
                      replies=[reply], collector_id=collector_id, period=period,
                      card=reply.data if reply.ok else None, missing=reply.status == 404)

    @app.get("/loans", response_class=HTMLResponse)
    async def loans(request: Request, stage: str | None = None, cursor: str | None = None,
                    loan_id: str | None = None) -> Response:
        who(request)
        if loan_id and loan_id.strip():
            return RedirectResponse(
                f"/loans/{quote(loan_id.strip(), safe='')}?lang={lang_of(request)}", 303)
        stage = stage if stage in STAGES else None
        reply = await upstreams.get("staging", "/v1/loans", stage=stage, cursor=cursor,
                                    limit=100)
        data = reply.data or {}
        return render(request, "loans.html", replies=[reply], stage=stage, stages=STAGES,
                      items=data.get("items") or [], next_cursor=data.get("next_cursor"))

    @app.get("/loans/{loan_id}", response_class=HTMLResponse)
    async def loan(request: Request, loan_id: str) -> HTMLResponse:
        who(request)
        path = quote(loan_id, safe="")
        view, log = await asyncio.gather(
            upstreams.get("staging", f"/v1/loans/{path}"),
            upstreams.get("notifier", f"/v1/loans/{path}/contacts", limit=500))
        if view.status == 404:
            return render(request, "loan.html", status=404, replies=[log], loan=None,
                          loan_id=loan_id, contacts=[], missing=True)
        contacts = list(reversed((log.data or {}).get("items") or []))  # newest first
        return render(request, "loan.html", replies=[view, log], loan=view.data,
                      loan_id=loan_id, contacts=contacts, contacts_ok=log.ok, missing=False)

    return app
