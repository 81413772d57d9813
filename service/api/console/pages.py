"""The review console's pages: sign-in, the queue, a case, and the forms that work it.

Server-rendered with Jinja2 (autoescaped) over the same ``ReviewChannel`` the API uses, so a
case claimed in the console is claimed for the API too, with the same rules (leases, four
eyes, the product's limits) and the same audit. Forms post ``application/x-www-form-urlencoded``
and are answered with a redirect (post/redirect/get), or with the page and the error when the
channel refuses. The one script (a countdown of the time left) is the package's own.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from service.api.auth import KeyRing
from service.api.console.session import COOKIE, LIFETIME_S, Session, Sessions
from service.api.console.texts import translator
from service.engine.messages import negotiate
from service.logs import mask_text
from service.review.case import BadVerdict, FourEyes, ReviewError, Verdict
from service.review.channel import STATES, BadCursor
from service.runtime import Runtime
from service.store.review import CaseNotFound

HERE = Path(__file__).parent
FORM = "application/x-www-form-urlencoded"
FORM_LIMIT = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send "Origin: null" with forms
    "Cache-Control": "no-store",  # the pages show (masked) personal data
}
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


def left(seconds: float) -> str:
    """Time left as the queue shows it: ``7:42``, ``-1:05`` once overdue, hours past an hour."""
    sign, seconds = ("-" if seconds < 0 else ""), abs(int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}" if hours else f"{sign}{minutes}:{secs:02d}"


def shown_value(value: Any) -> str:
    """A fact as a reviewer reads it: ``—`` for none, ``yes``/``no``, numbers without a stray ``.0``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer():
            return f"{value:,.0f}"
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["left"] = left
    env.filters["when"] = lambda v: (dt.datetime.fromisoformat(v) if isinstance(v, str) else v).astimezone(
        dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S") if v else "—"
    env.filters["value"] = shown_value
    env.filters["json"] = lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2).decode()
    return env


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


DONE = {"requested": "The review is opened: the case is in the queue.", "claimed": "You hold the case.",
        "released": "The case is back in the queue.",
        "decided": "Your decision is recorded.", "proposed": "Your approval waits for a second reviewer.",
        "confirmed": "The approval is confirmed: the decision is final.",
        "rejected": "The approval was rejected: the case is back for a first review."}


def console_routes(runtime: Runtime, keys: KeyRing) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = environment()
    sessions = Sessions(runtime.settings.pii_key.encode())
    channel = runtime.review

    def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        """A page in the browser's language (Chinese by default): its own words and the rules'."""
        language = negotiate(request.headers.get("accept-language"))
        html = env.get_template(template).render(language=language, _=translator(language), **values)
        return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, "Content-Language": language,
                                                               "Vary": "Accept-Language, Cookie"})

    def session_of(request: Request) -> Session | None:
        session = sessions.read(request.cookies.get(COOKIE))
        if session is None:
            return None
        key = keys.current(session.key, session.fingerprint)
        return session if key is not None and key.role == "reviewer" else None

    def same_origin(request: Request) -> bool:
        """A browser's POST names its origin; one from another site is refused."""
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return origin is None
        return urlsplit(origin).netloc == request.headers.get("host", "")

    async def posted(request: Request, session: Session) -> dict[str, str]:
        """A form posted from the console's own page in this session, or Refused."""
        if not same_origin(request):
            raise Refused(403, "the form came from another site")
        fields = await form(request)
        if not sessions.csrf_ok(session, fields.get("csrf")):
            raise Refused(403, "the form has expired: reload the page and try again")
        return fields

    async def form(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").split(";")[0].strip() != FORM:
            raise Refused(415, "forms are sent as application/x-www-form-urlencoded")
        body = await request.body()
        if len(body) > FORM_LIMIT:
            raise Refused(413, "the form is too large")
        try:
            fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "the form could not be read") from None
        return {k: v[0] for k, v in fields.items()}

    def to_login() -> RedirectResponse:
        return RedirectResponse("/console/login", status_code=303)

    @router.get("/console/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                            headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    @router.get("/console/login")
    async def login_page(request: Request) -> Response:
        if session_of(request) is not None:
            return RedirectResponse("/console/", status_code=303)
        return page(request, "login.html")

    @router.post("/console/login")
    async def login(request: Request) -> Response:
        try:
            if not same_origin(request):
                raise Refused(403, "sign in from the console's own page")
            fields = await form(request)
        except Refused as exc:
            return page(request, "login.html", exc.status, error=exc.message)
        key = keys.key_of("Bearer " + fields.get("key", "").strip())
        if key is None or key.role != "reviewer" or keys.current(key.name, key.digest[:8]) is None:
            return page(request, "login.html", 401, error="This is not a valid reviewer key.")
        _, cookie = sessions.issue(key.name, key.digest)
        response = RedirectResponse("/console/", status_code=303)
        response.set_cookie(COOKIE, cookie, max_age=LIFETIME_S, path="/console", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https"
                            or request.headers.get("x-forwarded-proto") == "https")
        return response

    @router.post("/console/logout")
    async def logout(request: Request) -> Response:
        response = to_login()
        response.delete_cookie(COOKIE, path="/console")
        return response

    @router.get("/console/")
    async def queue(request: Request, state: str | None = None, product: str | None = None,
                    cursor: str | None = None) -> Response:
        session = session_of(request)
        if session is None:
            return to_login()
        error = None
        if state not in (None, "", *STATES):
            state, error = None, "unknown state"
        try:
            listed = await channel.queue(state or None, product or None, cursor or None, 50)
        except BadCursor:
            listed, error = await channel.queue(state or None, product or None, None, 50), "stale page link"
        ruleset = runtime.ruleset
        more = None
        if listed["next_cursor"]:
            more = "/console/?" + urlencode({k: v for k, v in (("state", state), ("product", product),
                                                                ("cursor", listed["next_cursor"])) if v})
        return page(request, "queue.html", session=session, csrf=sessions.csrf(session), cases=listed["cases"],
                    states=STATES, state=state or "", product=product or "", more=more, error=error,
                    products=sorted(ruleset.products) if ruleset else [])

    async def case_page(request: Request, session: Session, case_id: str, status: int = 200,
                        error: str | None = None, done: str | None = None) -> Response:
        case = await channel.case(case_id)
        if case is None:
            return page(request, "missing.html", 404, session=session, csrf=sessions.csrf(session))
        language = negotiate(request.headers.get("accept-language"))
        factors = None
        record = await runtime.store.find(case["decision_id"])
        shown = await channel.decision(record, explain=True) if record is not None else None
        if shown is not None:
            factors = (await runtime.explanations.of(shown, language))["factors"]
        ruleset = runtime.ruleset
        product = ruleset.products.get(case["product"]) if ruleset else None
        reasons = ruleset.review_reasons if ruleset else {}
        proposal = case.get("proposal")
        return page(request, "case.html", status, session=session, csrf=sessions.csrf(session), case=case, error=error,
                    done=done, factors=factors, product=product,
                    reasons={o: {c: m.text(language) for c, m in codes.items()} for o, codes in reasons.items()},
                    mine=case["holder"] == session.key,
                    proposer=proposal["by"] if proposal else None)

    @router.get("/console/decisions")
    async def find_decision(request: Request, id: str = "") -> Response:
        """A decision by its id or the bank's application id: its explanation, as the applicant
        would be given it, and its review — what compliance needs to answer a complaint."""
        session = session_of(request)
        if session is None:
            return to_login()
        return await decision_page(request, session, id.strip())

    async def decision_page(request: Request, session: Session, wanted: str, status: int = 200,
                            error: str | None = None) -> Response:
        record = None
        if wanted:
            record = await (runtime.store.find(wanted) if wanted.startswith("dec_")
                            else runtime.store.find_by_application(wanted[:64]))
        language = negotiate(request.headers.get("accept-language"))
        explanation = None
        if record is not None:
            shown = await channel.decision(record, explain=True)
            assert shown is not None
            explanation = await runtime.explanations.of(shown, language)
        return page(request, "decision.html", 404 if wanted and record is None else status, session=session,
                    csrf=sessions.csrf(session), wanted=wanted, explanation=explanation, error=error,
                    now=dt.datetime.now(dt.UTC).isoformat())

    @router.post("/console/decisions/{decision_id}/review-request")
    async def request_review(request: Request, decision_id: str) -> Response:
        """The applicant asked (by phone, at a branch) for a person to review an automatic decision."""
        session = session_of(request)
        if session is None:
            return to_login()
        try:
            fields = await posted(request, session)
            reason = fields.get("reason", "").strip()
            if not reason or len(reason) > 1000:
                raise Refused(422, "give the applicant's reason (up to 1000 characters)")
            record = await runtime.store.find(decision_id)
            if record is None:
                raise Refused(404, "no decision with that id")
            settings = runtime.settings
            case = await channel.request_review(record, session.key, reason,
                                                dt.timedelta(days=settings.review_request_days),
                                                dt.timedelta(hours=settings.review_request_hours))
        except Refused as exc:
            return await decision_page(request, session, decision_id, exc.status, exc.message)
        except ReviewError as exc:
            return await decision_page(request, session, decision_id, 409, exc.message)
        return RedirectResponse(f"/console/cases/{case['case_id']}?done=requested", status_code=303)

    @router.get("/console/cases/{case_id}")
    async def case(request: Request, case_id: str, done: str | None = None) -> Response:
        session = session_of(request)
        if session is None:
            return to_login()
        return await case_page(request, session, case_id, done=DONE.get(done or ""))

    @router.post("/console/cases/{case_id}/{action}")
    async def act(request: Request, case_id: str, action: str) -> Response:
        session = session_of(request)
        if session is None:
            return to_login()
        try:
            done = await perform(session.key, case_id, action, await posted(request, session))
        except Refused as exc:
            return await case_page(request, session, case_id, exc.status, error=exc.message)
        except CaseNotFound:
            return page(request, "missing.html", 404, session=session, csrf=sessions.csrf(session))
        except BadVerdict as exc:
            return await case_page(request, session, case_id, 422, error=f"{exc.field}: {exc.message}")
        except FourEyes as exc:
            return await case_page(request, session, case_id, 403, error=exc.message)
        except ReviewError as exc:
            return await case_page(request, session, case_id, 409, error=exc.message)
        return RedirectResponse(f"/console/cases/{case_id}?done={done}", status_code=303)

    async def perform(key: str, case_id: str, action: str, fields: dict[str, str]) -> str:
        note = mask_text(fields.get("note", "").strip()) or None  # free text may quote an ID number
        if action == "claim":
            await channel.claim(case_id, key)
            return "claimed"
        if action == "release":
            await channel.release(case_id, key, note)
            return "released"
        if action == "confirm":
            await channel.confirm(case_id, key, note)
            return "confirmed"
        if action == "reject":
            if not note:
                raise Refused(422, "say why the approval is rejected")
            await channel.reject(case_id, key, note)
            return "rejected"
        if action == "decide":
            outcome = fields.get("outcome", "")
            if outcome not in ("approve", "decline"):
                raise Refused(422, "choose approve or decline")
            if not note:
                raise Refused(422, "a decision needs a note (kept in the case's audit)")
            verdict = Verdict(outcome, fields.get(f"reason_{outcome}", ""), note, *offer(outcome, fields))
            result = await channel.decide(case_id, key, verdict)
            return "proposed" if result["state"] == "awaiting_confirmation" else "decided"
        raise Refused(404, "no such action")

    return router


def offer(outcome: str, fields: dict[str, str]) -> tuple[float | None, int | None, str | None]:
    """An approval's offer from the form; a decline has none."""
    if outcome != "approve":
        return None, None, None
    try:
        amount = float(fields.get("amount", ""))
        term = int(fields.get("term_months", ""))
    except ValueError:
        raise Refused(422, "an approval needs an amount and a term") from None
    if amount != amount or amount in (float("inf"), float("-inf")):
        raise Refused(422, "the amount must be a number")
    return amount, term, fields.get("rate_tier") or None
