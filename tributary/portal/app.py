"""The rights-holder portal: read-only pages over the ledger for one signed-in holder.

Pages: overview (balances per currency, the next payout, earnings charts), statements
(HTML, CSV, PDF), payouts with their ledger entries, "why was I paid" (each credit's
evidence, and a dispute form for probable-tier matches), works, disputes. Every page
reads through :mod:`tributary.portal.data` with the session's holder bound as a query
parameter; a dispute is a record on ``review-requests``, never an edit.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tributary import reports
from tributary.errors import UserError
from tributary.health import Health
from tributary.ids import derived_id
from tributary.money import format_micros
from tributary.policy import PayoutPolicy
from tributary.portal import charts, data
from tributary.portal.auth import LinkError, Session, Signer
from tributary.portal.pdf import statement_pdf
from tributary.reports import Query

log = logging.getLogger("tributary.portal")
HERE = Path(__file__).parent
COOKIE = "tributary_session"
CREDITS_PER_PAGE = 50
CHART_DAYS = 30

REQUESTS = Counter("tributary_portal_requests_total", "Portal requests", ["page", "status"])
LATENCY = Histogram("tributary_portal_request_seconds", "Portal request latency", ["page"])
SIGNINS = Counter("tributary_portal_signins_total", "Sign-in attempts", ["outcome"])
DISPUTES = Counter("tributary_portal_disputes_total", "Disputes filed by holders")
READ_ERRORS = Counter("tributary_portal_read_errors_total", "Pages that could not read the ledger")

# publish(topic, key, record): the dispute's way onto Kafka (tributary.kafka.publish in the service)
Publish = Callable[[str, str, dict[str, Any]], None]
# login_link(stripe_account) -> Stripe Express dashboard URL
LoginLink = Callable[[str], str]


@dataclass
class Portal:
    run: Query
    signer: Signer
    defaults: PayoutPolicy
    publish: Publish
    login_link: LoginLink | None = None
    secure_cookies: bool = False


class NotFound(Exception):
    """Not this holder's (or not there): the same answer either way."""


class BadRequest(Exception):
    pass


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["money"] = lambda micros, currency: format_micros(int(micros), currency)
    env.filters["pct"] = lambda ppm: f"{int(ppm) / 10_000:.2f}%"
    env.filters["score"] = lambda v: "" if v is None else f"{float(v):.3f}"
    return env


ENV = _env()

SECURITY_HEADERS = {
    # form-action 'self': no form answer redirects off-site (the Express dashboard is a link)
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",  # a sign-in link never leaks to another site
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def create_app(portal: Portal) -> Starlette:
    def page(name: str, handler: Callable[..., Response], signed_in: bool = True) -> Callable[[Request], Any]:
        """A page: the form is read on the event loop, the handler (ClickHouse reads, Kafka,
        Stripe: all blocking) runs in the thread pool, so one slow read holds up nobody else."""
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            session = portal.signer.session(request.cookies.get(COOKIE))
            try:
                response: Response
                if signed_in and session is None:
                    response = _render(request, None, "signin.html", {"problem": None}, status=401)
                else:
                    form = dict(await request.form()) if request.method == "POST" else {}
                    response = await run_in_threadpool(handler, request, session, form)
            except NotFound:
                response = _render(request, session, "error.html", {
                    "title": "Not found", "message": "There is nothing here for your account. Links to payouts "
                    "and credits work only for the holder who was shown them."}, status=404)
            except BadRequest as exc:
                response = _render(request, session, "error.html", {"title": "Check what you entered",
                                                                    "message": str(exc)}, status=400)
            except Exception:  # never a stack trace or SQL text on a page
                READ_ERRORS.inc()
                incident = uuid.uuid4().hex[:12]
                log.exception("page=%s incident=%s failed", name, incident)
                response = _render(request, session, "error.html", {
                    "title": "This page cannot be shown right now",
                    "message": f"The ledger could not be read. Try again in a minute; if it keeps happening, "
                               f"tell us incident {incident}."}, status=503)
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            REQUESTS.labels(name, str(response.status_code)).inc()
            LATENCY.labels(name).observe(time.perf_counter() - started)
            log.info("page=%s status=%s ms=%.1f holder_id=%s", name, response.status_code,
                     (time.perf_counter() - started) * 1000, session.holder_id if session else "-")
            return response
        return endpoint

    def ref(session: Session) -> Callable[[str], str]:
        return lambda ident: portal.signer.ref(session.holder_id, ident)

    def _render(request: Request, session: Session | None, template: str, context: dict[str, Any],
                status: int = 200) -> HTMLResponse:
        body = ENV.get_template(template).render(
            request=request, session=session, path=request.url.path,
            ref=ref(session) if session else (lambda ident: ""), **context)
        return HTMLResponse(body, status_code=status)

    def _form_session(session: Session, form: dict[str, Any]) -> None:
        if not portal.signer.csrf_ok(session, form.get("csrf")):
            raise BadRequest("This form expired or did not come from this portal. Reload the page and try again.")

    # -- sign-in ---------------------------------------------------------------------------------
    def signin(request: Request, session: Session | None, form: dict[str, Any]) -> Response:
        token = request.query_params.get("token")
        if not token:
            return _render(request, session, "signin.html", {"problem": None})
        try:
            holder = portal.signer.holder_of_link(token)
        except LinkError as exc:
            SIGNINS.labels("refused").inc()
            return _render(request, None, "signin.html", {"problem": str(exc)}, status=403)
        if data.profile(portal.run, holder) is None:
            SIGNINS.labels("unknown_holder").inc()
            return _render(request, None, "signin.html", {"problem": "this link is for an account we do not "
                                                                       "know (any more)"}, status=403)
        SIGNINS.labels("ok").inc()
        _, cookie = portal.signer.new_session(holder)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, cookie, max_age=12 * 3600, httponly=True, samesite="lax",
                            secure=portal.secure_cookies, path="/")
        return response

    def signout(request: Request, session: Session, form: dict[str, Any]) -> Response:
        _form_session(session, form)
        response = _render(request, None, "signin.html", {"problem": None, "signed_out": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- overview ----------------------------------------------------------------------------------
    def overview(request: Request, session: Session, form: dict[str, Any]) -> Response:
        today = datetime.now(UTC).date()
        ov = data.overview(portal.run, session.holder_id, portal.defaults, today)
        currencies = [b.currency for b in ov.balances]
        currency = _one_of(request.query_params.get("currency"), currencies, "you have money in")
        days = charts.day_range(today, CHART_DAYS)
        works = [r for r in data.earnings_by_work(portal.run, session.holder_id, days[0], today) if r[1] == currency]
        models = [r for r in data.earnings_by_model(portal.run, session.holder_id, days[0], today) if r[1] == currency]
        work_label = _work_labels({str(r[2]): str(r[3] or "") for r in works})
        by_work = [(_day(r[0]), work_label[str(r[2])], int(r[4])) for r in works]
        by_model = [(_day(r[0]), str(r[2] or "?"), int(r[3])) for r in models]
        figures = []
        for label, points in (("work", by_work), ("model", by_model)):
            names, values = charts.series(points, days)
            figures.append({"label": label, "svg": charts.stacked_bars(label, days, names, values, currency),
                            "legend": charts.legend(names),
                            "table": [(d, [values[n][i] for n in names]) for i, d in enumerate(days)
                                      if any(values[n][i] for n in names)], "names": names})
        return _render(request, session, "overview.html", {
            "ov": ov, "currency": currency, "currencies": currencies, "figures": figures, "days": CHART_DAYS,
            "stripe_dashboard": portal.login_link is not None})

    # -- statements ----------------------------------------------------------------------------------
    def _statement(request: Request, session: Session) -> reports.Statement:
        q = request.query_params
        try:
            since, until = reports.dates(q.get("since") or None, q.get("until") or None, None)
            currencies = reports.holder_currencies(portal.run, session.holder_id)
            currency = _one_of(q.get("currency"), currencies, "your ledger has") if currencies else None
            return reports.statement(portal.run, session.holder_id, since, until, currency)
        except UserError as exc:  # worded for the command line: say it in the form's words
            raise BadRequest(str(exc).replace("--since", "From").replace("--until", "To")) from None

    def statements(request: Request, session: Session, form: dict[str, Any]) -> Response:
        st = _statement(request, session)
        return _render(request, session, "statements.html", {
            "st": st, "summary": reports.statement_summary(st),
            "currencies": reports.holder_currencies(portal.run, session.holder_id),
            "query": str(request.url.query)})

    def statement_file(request: Request, session: Session, form: dict[str, Any]) -> Response:
        st = _statement(request, session)
        kind = request.path_params["kind"]
        name = re.sub(r"[^A-Za-z0-9._-]", "_",
                      f"statement-{st.holder_id}-{st.currency}-{st.since or 'start'}-{st.until or 'today'}")
        if kind == "csv":
            body, ctype = reports.statement_csv(st).encode(), "text/csv; charset=utf-8"
        elif kind == "pdf":
            body, ctype = statement_pdf(st), "application/pdf"
        elif kind == "html":
            body, ctype = reports.statement_html(st).encode(), "text/html; charset=utf-8"
        else:
            raise NotFound
        return Response(body, media_type=ctype,
                        headers={"Content-Disposition": f'attachment; filename="{name}.{kind}"'})

    # -- payouts -------------------------------------------------------------------------------------
    def payouts(request: Request, session: Session, form: dict[str, Any]) -> Response:
        return _render(request, session, "payouts.html", {"payouts": data.payouts(portal.run, session.holder_id)})

    def payout(request: Request, session: Session, form: dict[str, Any]) -> Response:
        payout_id = portal.signer.unref(session.holder_id, request.path_params["ref"])
        found = data.payout(portal.run, session.holder_id, payout_id) if payout_id else None
        if found is None:
            raise NotFound
        return _render(request, session, "payout.html", {"p": found})

    # -- credits and evidence ------------------------------------------------------------------------
    def credits(request: Request, session: Session, form: dict[str, Any]) -> Response:
        try:
            number = int(request.query_params.get("page", "1"))
        except ValueError:
            raise BadRequest("page must be a whole number") from None
        if not 1 <= number <= 1_000_000:
            raise BadRequest("page must be a whole number from 1 on")
        total, rows = data.credits(portal.run, session.holder_id, CREDITS_PER_PAGE, (number - 1) * CREDITS_PER_PAGE)
        return _render(request, session, "credits.html", {
            "credits": rows, "total": total, "page": number, "pages": max(-(-total // CREDITS_PER_PAGE), 1)})

    def _evidence(request: Request, session: Session) -> data.Evidence:
        entry_id = portal.signer.unref(session.holder_id, request.path_params["ref"])
        found = data.evidence(portal.run, session.holder_id, entry_id) if entry_id else None
        if found is None:
            raise NotFound
        return found

    def credit(request: Request, session: Session, form: dict[str, Any]) -> Response:
        # ?filed=1: the page the dispute form redirects to (post, redirect, get: a reload
        # never files twice), until ClickHouse has the request
        filed = request.query_params.get("filed") == "1"
        return _render(request, session, "credit.html", {"ev": _evidence(request, session), "filed": filed})

    def dispute(request: Request, session: Session, form: dict[str, Any]) -> Response:
        _form_session(session, form)
        ev = _evidence(request, session)
        reason = str(form.get("reason") or "").strip()
        if not ev.disputable:
            raise BadRequest("This credit cannot be disputed: only probable-tier matches that no reviewer has "
                             "decided yet, and only once.")
        if not reason:
            return _render(request, session, "credit.html", {"ev": ev, "filed": False,
                                                              "problem": "Say what is wrong with this match "
                                                                         "(the reviewer reads it)."}, status=400)
        if len(reason) > 2000:
            return _render(request, session, "credit.html", {"ev": ev, "filed": False, "reason": reason,
                                                              "problem": "Keep the reason under 2,000 characters."},
                           status=400)
        c = ev.credit
        record = {"schema_version": 1,
                  "request_id": derived_id("rr", session.holder_id, c["event_id"], c["work_id"]),
                  "event_id": c["event_id"], "work_id": c["work_id"], "holder_id": session.holder_id,
                  "entry_id": c["entry_id"], "reason": reason,
                  "requested_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "requested_by": "portal"}
        try:
            portal.publish("review-requests", c["event_id"], record)
        except Exception as exc:  # noqa: BLE001 - nothing was filed: say so, keep what they wrote
            log.warning("dispute not recorded event_id=%s work_id=%s: %s", c["event_id"], c["work_id"], exc)
            return _render(request, session, "credit.html", {
                "ev": ev, "filed": False, "reason": reason,
                "problem": "Your dispute could not be recorded just now, so nothing was filed. Your text is "
                           "still below: try again in a few minutes."}, status=503)
        DISPUTES.inc()
        log.info("dispute filed request_id=%s event_id=%s work_id=%s holder_id=%s", record["request_id"],
                 c["event_id"], c["work_id"], session.holder_id)
        return RedirectResponse(f"/credits/{request.path_params['ref']}?filed=1", status_code=303)

    # -- works and disputes ----------------------------------------------------------------------------
    def works(request: Request, session: Session, form: dict[str, Any]) -> Response:
        today = datetime.now(UTC).date()
        days = charts.day_range(today, CHART_DAYS)
        listed = data.works(portal.run, session.holder_id)
        cover = data.coverage(portal.run, session.holder_id, days[0], today)
        titles = _work_labels({w["work_id"]: w["title"] for w in listed})
        names, values = charts.series([(_day(d), titles.get(w, w), int(n)) for d, w, n in cover], days)
        chart = charts.stacked_bars("work (outputs credited)", days, names, values, "outputs") if names else ""
        return _render(request, session, "works.html", {"works": listed, "chart": chart,
                                                        "legend": charts.legend(names), "days": CHART_DAYS})

    def disputes(request: Request, session: Session, form: dict[str, Any]) -> Response:
        return _render(request, session, "disputes.html", {"disputes": data.disputes(portal.run, session.holder_id)})

    def stripe_dashboard(request: Request, session: Session, form: dict[str, Any]) -> Response:
        _form_session(session, form)
        found = data.profile(portal.run, session.holder_id)
        if portal.login_link is None or not found or not found[1]:
            raise BadRequest("No Stripe Express account is linked to your holder account yet.")
        try:
            url = portal.login_link(found[1])
        except Exception as exc:  # noqa: BLE001 - Stripe's answer goes to the log, not the page
            log.warning("stripe login link failed holder_id=%s: %s", session.holder_id, exc)
            return _render(request, session, "error.html", {
                "title": "Stripe did not answer", "message": "Your Stripe Express dashboard cannot be opened right "
                "now. Try again in a few minutes."}, status=503)
        return _render(request, session, "stripe.html", {"url": url})

    def onboarding_done(request: Request, session: Session | None, form: dict[str, Any]) -> Response:
        return _render(request, session, "error.html", {
            "title": "Thank you", "message": "Stripe has your details. Payouts start as soon as Stripe enables "
            "transfers to your account; the overview says when they wait for it."})

    health = Health(stall_after_s=float("inf"))  # alive while uvicorn answers; ready while the ledger reads
    health.mark_ready()

    def ledger_readable() -> str | None:
        try:
            portal.run("SELECT 1", {})
        except Exception as exc:  # noqa: BLE001 - the probe reports it, the page never shows it
            log.warning("readyz: the ledger cannot be read: %s", str(exc).splitlines()[0][:300] if str(exc) else exc)
            return "the ledger cannot be read"
        return None

    health.ready_check = ledger_readable

    async def health_page(request: Request) -> Response:
        answer = await run_in_threadpool(health.response, request.url.path)
        assert answer is not None
        status, body, content_type = answer
        return Response(body, status_code=status, media_type=content_type)

    routes = [
        Route("/", page("overview", overview)),
        Route("/signin", page("signin", signin, signed_in=False)),
        Route("/signout", page("signout", signout), methods=["POST"]),
        Route("/statements", page("statements", statements)),
        Route("/statements/statement.{kind}", page("statement_file", statement_file)),
        Route("/payouts", page("payouts", payouts)),
        Route("/payouts/{ref}", page("payout", payout)),
        Route("/credits", page("credits", credits)),
        Route("/credits/{ref}", page("credit", credit)),
        Route("/credits/{ref}/dispute", page("dispute", dispute), methods=["POST"]),
        Route("/works", page("works", works)),
        Route("/disputes", page("disputes", disputes)),
        Route("/stripe-dashboard", page("stripe_dashboard", stripe_dashboard), methods=["POST"]),
        Route("/onboarding/done", page("onboarding_done", onboarding_done, signed_in=False)),
        Route("/healthz", health_page), Route("/readyz", health_page), Route("/metrics", health_page),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes)


def _one_of(asked: str | None, currencies: list[str], have: str) -> str:
    """The currency a page shows: one the holder has (the first by default); anything else
    is refused by name, never echoed into markup or headers unchecked."""
    if not currencies:
        return "USD"
    if asked is None or asked == "":
        return currencies[0]
    if asked not in currencies:
        shown = asked if re.fullmatch(r"[A-Za-z]{3}", asked) else "that currency"
        raise BadRequest(f"{shown}: {have} {', '.join(currencies)}")
    return asked


def _work_labels(titles: dict[str, str]) -> dict[str, str]:
    """A legend label per work: its title, or title and id where two works share a title."""
    seen: dict[str, int] = {}
    for title in titles.values():
        seen[title] = seen.get(title, 0) + 1
    return {w: (t if t and seen[t] == 1 else f"{t or w} ({w})" if t else w) for w, t in titles.items()}


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def link(base_url: str, signer: Signer, holder_id: str, ttl_s: int) -> str:
    return f"{base_url.rstrip('/')}/signin?token={signer.signin_token(holder_id, ttl_s)}"


def expiry_text(ttl_s: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=ttl_s)).strftime("%Y-%m-%d %H:%M UTC")
