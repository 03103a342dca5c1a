"""HTTP plumbing shared by the engine API and the gateway: envelopes, the error shape, request ids.

* ``envelope`` / ``error_body`` build the docs/contracts.md shapes;
* ``install_error_handlers`` turns every error FastAPI/Starlette can raise (404, 405, validation,
  auth, not-available, and anything unexpected) into ``{"error": {"code", "message"}}``;
* ``RequestContext`` is a pure-ASGI middleware: it takes a sane ``X-Request-Id`` or makes one,
  echoes it, exposes it to logs through a context variable, and counts requests per endpoint;
* ``BodyLimit`` is a pure-ASGI middleware that refuses a request body over ``MAX_BODY_BYTES``
  (413) before it is held in memory, and ``BoundedJSONRoute`` parses JSON bodies through
  :func:`mevstack.jsonsafe.loads` (depth-bounded) instead of the standard library's parser.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mevstack import jsonsafe
from mevstack.api.auth import AuthError
from mevstack.api.view import BadRequest, Conflict, NotAvailable, NotFound
from mevstack.errors import MevstackError
from mevstack.events import utc_now_iso
from mevstack.obs import metrics

log = logging.getLogger("mevstack.api")

REQUEST_ID_HEADER = "x-request-id"
# Request bodies are small JSON objects; the same cap on the engine and the gateway.
MAX_BODY_BYTES = 1 << 20

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

REQUESTS = metrics.counter(
    "mevstack_http_requests_total", "HTTP requests served.", ["endpoint", "result"]
)
LATENCY = metrics.histogram(
    "mevstack_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "not_available",
    504: "gateway_timeout",
}


class JSONResponse(StarletteJSONResponse):
    """JSON rendered by orjson (several times faster than the standard library)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class BoundedJSONRequest(Request):
    """A request whose ``json()`` is :func:`mevstack.jsonsafe.loads` (depth-bounded, exact)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = jsonsafe.loads(await self.body())
        return self._json


class BoundedJSONRoute(APIRoute):
    """FastAPI's route, parsing bodies with :class:`BoundedJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(BoundedJSONRequest(request.scope, request.receive))

        return bounded


def meta(count: int, source: str, *, stale: bool = False, **extra: Any) -> dict[str, Any]:
    return {"count": count, "as_of": utc_now_iso(), "stale": stale, "source": source, **extra}


def envelope(data: Any, source: str, **extra: Any) -> dict[str, Any]:
    count = len(data) if isinstance(data, list) else 1
    return {"data": data, "meta": meta(count, source, **extra)}


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code or _STATUS_CODES.get(status, "error"), "message": message}}


def error_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = list(exc.errors())
    # Of the alternatives of a union, the one that got deepest is the one the caller meant.
    first: dict[str, Any] = dict(max(errors, key=lambda e: len(e.get("loc", ())), default={}))
    loc = first.get("loc", ())
    where = ".".join(
        str(p)
        for p in loc
        # drop "body" (unless it is all there is) and pydantic's names of union members
        if (p != "body" or len(loc) == 1) and not (isinstance(p, str) and "[" in p)
    )
    text = str(first.get("msg", "invalid request"))
    if first.get("type") == "literal_error":
        text = f"expected one of {first.get('ctx', {}).get('expected', '?')}"
    return f"{where}: {text}" if where else text


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"} if "method" in scope else scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def reject_unknown_query(request: Request) -> None:
    """A dependency of every route: a query parameter the route does not declare is a 400."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = {p.alias for p in _query_params(dependant)}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}")


def _query_params(dependant: Any) -> list[Any]:
    params = list(dependant.query_params)
    for sub in dependant.dependencies:
        params += _query_params(sub)
    return params


# The view's deliberate errors and the status and code each one answers with.
_VIEW_ERRORS: dict[type[Exception], tuple[int, str]] = {
    NotAvailable: (503, "not_available"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    BadRequest: (400, "bad_request"),
}


def _view_error_handler(
    status: int, code: str
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(_: Request, exc: Exception) -> Response:
        return error_response(status, str(exc), code)

    return handler


def install_error_handlers(
    app: FastAPI, *, allowed: Callable[[Scope], list[str]] | None = None
) -> None:
    """Every error as the envelope; ``allowed`` names a path's methods for a 405's ``Allow``."""
    methods_of = allowed if allowed is not None else lambda scope: allowed_methods(app, scope)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and message == "Not Found":
            message = "no such path"
        if exc.status_code == 405:
            # Starlette names only the first route of the path; several routes may share it.
            allowed = methods_of(request.scope)
            if not allowed:
                # a catch-all route matched, but no real route has this path
                return error_response(404, "no such path")
            headers["Allow"] = ", ".join(allowed)
            message = f"method {request.method} not allowed here (allowed: {', '.join(allowed)})"
        return error_response(exc.status_code, message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return error_response(400, _validation_message(exc))

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, str(exc), exc.code, headers)

    for exc_type, (status, code) in _VIEW_ERRORS.items():
        app.add_exception_handler(exc_type, _view_error_handler(status, code))

    @app.exception_handler(MevstackError)
    async def _unavailable(_: Request, exc: MevstackError) -> Response:
        # A deliberate error of a part behind the API (store unreachable, bus closed...).
        log.warning("request failed: %s", exc, extra={"request_id": request_id_var.get()})
        return error_response(503, str(exc), "unavailable")

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc, extra={"request_id": request_id_var.get()})
        return error_response(500, "internal error (logged with the request id)")


def new_request_id(given: str | None) -> str:
    if given is not None and _REQUEST_ID_RE.match(given):
        return given
    return uuid.uuid4().hex


class RequestContext:
    """Request id in and out, per-endpoint request metrics, one JSON log line per request."""

    def __init__(self, app: ASGIApp, *, logger: logging.Logger = log) -> None:
        self.app = app
        self.log = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = new_request_id(given)
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(endpoint=endpoint, result=str(status)).inc()
            LATENCY.labels(endpoint=endpoint).observe(elapsed)
            # Refusals (4xx) and failures (5xx) are worth a line; successes only when debugging.
            level = (
                logging.ERROR if status >= 500 else logging.INFO if status >= 400 else logging.DEBUG
            )
            if self.log.isEnabledFor(level):
                self.log.log(
                    level,
                    "request",
                    extra={
                        "request_id": rid,
                        "method": scope.get("method"),
                        "endpoint": endpoint,
                        "status": status,
                        "duration_s": round(elapsed, 6),
                    },
                )
            request_id_var.reset(token)


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413, holding at most that much.

    A declared ``Content-Length`` over the cap is refused before anything is read; otherwise the
    body is collected up to the cap (chunked bodies included) and replayed to the app, so
    nothing behind this middleware can be made to read more.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = error_response(
            413, f"request body too large (limit {self.max_bytes} bytes)", "payload_too_large"
        )
        await answer(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
