"""The REST gateway (port 8093): auth, rate limits, cache, routing and failover in front of engines.

A request goes through, in order: CORS (explicit origins only), the request id, the body cap,
the path check (``gateway/paths.py``: the raw path, decoded once, re-encoded for the engine), a
405 for a method the engine's route does not have, the gateway's own auth check (the scope of the
engine route the path reaches; the engine checks again), the rate limits (per client address and
per token), then either the cache (GET) or a backend.  The engine's routes come from the engine
app itself, so the gateway and the engine cannot disagree about which endpoint a path is.

Reads try backends healthiest first and move to the next one when a backend cannot be reached;
trades go to the lease holder and are only retried elsewhere when the request provably never
reached the first backend (connect error).
When no backend answers a GET, the last good answer is served with ``meta.stale = true`` and
``meta.age_s``; without one, the answer is 503 ``no_backend``.

Auth runs before the cache, so a cached answer is only ever served to a caller allowed to read
it; a successful write drops the cached reads it affects, so the next read is fresh.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from mevstack import __version__
from mevstack.api.app import create_app
from mevstack.api.auth import Authenticator, AuthError, Principal, SessionSigner, bearer
from mevstack.api.http import (
    REQUEST_ID_HEADER,
    BodyLimit,
    JSONResponse,
    RequestContext,
    allowed_methods,
    error_response,
    install_error_handlers,
    request_id_var,
)
from mevstack.api.view import UnavailableView
from mevstack.gateway.backends import FAILOVERS, Backend, BackendPool
from mevstack.gateway.cache import (
    ResponseCache,
    affected_prefixes,
    cache_key,
    key_under,
    mark_stale,
)
from mevstack.gateway.paths import BadPath, Target, normalise
from mevstack.gateway.proxies import client_address, parse_networks
from mevstack.gateway.ratelimit import (
    LIMITED,
    MemoryRateLimiter,
    RateLimiter,
    RateLimits,
    retry_after_header,
)
from mevstack.obs import metrics

CACHE = metrics.counter(
    "mevstack_gateway_cache_requests_total",
    "GET answers by cache outcome (hit, revalidate, miss, stale, bypass).",
    ["result"],
)
PROXIED = metrics.counter(
    "mevstack_gateway_proxied_requests_total", "Requests forwarded to a backend.", ["result"]
)

# Headers passed to the engine; everything else (hop-by-hop, cookies, host) stays here.
_FORWARD_HEADERS = ("authorization", "content-type", "accept", "idempotency-key")
# Reads must fail over within a second even when an engine hangs without closing its socket.
_READ_TIMEOUT = httpx.Timeout(connect=0.25, read=0.5, write=0.5, pool=0.5)
_WRITE_TIMEOUT = httpx.Timeout(connect=0.25, read=15.0, write=5.0, pool=1.0)
# Headers of an engine's answer passed on to the client.
_ANSWER_HEADERS = ("retry-after", "allow")
# Methods the proxy route takes; others get the engine route's 405 from the error handler.
_PROXY_METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"]
# Statuses that say the engine itself is broken (503 is a deliberate "feature not available").
_BROKEN_BACKEND = frozenset({500, 502, 504})


@dataclass
class GatewayOptions:
    backends: list[str]
    cors_origins: list[str] = field(default_factory=list)
    limits: RateLimits = field(default_factory=RateLimits)
    trusted_proxies: Collection[str] = ()
    health_interval: float = 0.25
    health_timeout: float = 0.5
    swr_s: float = 2.0
    ttls: dict[str, float] | None = None


_LOGIN = "/api/auth/login"
_EXECUTE = "/api/mev/opportunities/{opportunity_id}/execute"


@functools.cache
def engine_routes() -> tuple[APIRoute, ...]:
    """The engine API's routes, taken from the engine app itself (built once, never served)."""
    template = create_app(
        view=UnavailableView(),
        authenticator=Authenticator(signer=SessionSigner(secrets.token_bytes(32))),
    )
    return tuple(r for r in template.router.routes if isinstance(r, APIRoute))


def engine_route(method: str, path: str) -> tuple[str | None, list[str]]:
    """The engine route serving ``method`` on the decoded ``path`` and every method it has."""
    scope = {"type": "http", "path": path, "root_path": "", "method": method}
    found: str | None = None
    methods: set[str] = set()
    for route in engine_routes():
        match, _ = route.matches(scope)
        if match == Match.FULL and found is None:
            found = route.path
        if match != Match.NONE:
            methods |= route.methods or set()
    return found, sorted(methods)


def required_scope(method: str, path: str) -> str | None:
    """The scope the gateway demands before forwarding the decoded ``path`` (the engine checks
    again).  Decided on the engine route the path reaches, not on how the path looks."""
    route, _ = engine_route(method, path)
    if route == _LOGIN:
        return None
    if method in ("GET", "HEAD"):
        return "read"
    if route == _EXECUTE:
        return "trade"
    return "admin"


_TARGET = "mevstack.target"


class PathCheck:
    """Checks every request's raw path before routing (``gateway/paths.py``).

    A bad path is refused by ``refuse``; a good one is left in the scope for the proxy.  This
    runs before the router because the router matches the decoded path, in which a control
    character can make a path match no route at all (a 404 that hides the real problem).
    """

    def __init__(
        self, app: ASGIApp, *, refuse: Callable[[Request, BadPath], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                scope[_TARGET] = normalise(scope.get("raw_path") or scope["path"].encode())
            except BadPath as exc:
                answer = await self.refuse(Request(scope, receive), exc)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Gateway:
    """Owns the pooled HTTP client, the backend pool, the cache and the limiter."""

    def __init__(
        self,
        options: GatewayOptions,
        authenticator: Authenticator,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.options = options
        self.authenticator = authenticator
        self.limiter = limiter if limiter is not None else MemoryRateLimiter()
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
            timeout=_READ_TIMEOUT,
        )
        self.pool = BackendPool(
            options.backends,
            self.client,
            interval=options.health_interval,
            timeout=options.health_timeout,
        )
        self.cache = ResponseCache(ttls=options.ttls, swr_s=options.swr_s)
        self.trusted_proxies = parse_networks(options.trusted_proxies)
        self._refreshing: dict[str, asyncio.Task[Any]] = {}
        self._inflight: dict[str, asyncio.Future[Response | None]] = {}
        self.app = self._build_app()

    async def start(self) -> None:
        await self.pool.check_all()
        self.pool.start()

    async def aclose(self) -> None:
        await self.pool.stop()
        for task in list(self._refreshing.values()):
            task.cancel()
        await self.client.aclose()
        await self.limiter.aclose()

    # --- the app ----------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.aclose()

        app = FastAPI(
            title="mevstack gateway",
            version=__version__,
            docs_url=None,
            redoc_url=None,
            openapi_url=None,
            lifespan=lifespan,
            default_response_class=JSONResponse,
        )

        def allowed(scope: Scope) -> list[str]:
            path = scope.get("path", "")
            if path.startswith("/api/"):
                return engine_route("GET", path)[1]
            return allowed_methods(app, scope)

        install_error_handlers(app, allowed=allowed)
        app.add_middleware(PathCheck, refuse=self._refuse_path)
        app.add_middleware(BodyLimit)
        app.add_middleware(RequestContext)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(self.options.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After", "X-Cache"],
            allow_credentials=False,
            max_age=600,
        )

        @app.get("/health")
        async def health() -> JSONResponse:
            return JSONResponse(
                {
                    "status": self.pool.status(),
                    "backends": [b.describe() for b in self.pool.backends],
                    "version": __version__,
                }
            )

        @app.get("/metrics")
        async def prometheus() -> Response:
            body, content_type = metrics.render()
            return Response(body, media_type=content_type)

        @app.get("/openapi.json")
        async def openapi(request: Request) -> Response:
            return await self.handle(request, "/openapi.json", None)

        @app.api_route("/api/{rest:path}", methods=_PROXY_METHODS)
        async def proxy(request: Request, rest: str) -> Response:
            target: Target = request.scope[_TARGET]
            _, methods = engine_route(request.method, target.decoded)
            if methods and request.method not in methods:
                limited = await self._limit(request, None)
                allow = ", ".join(methods)
                return limited or error_response(
                    405,
                    f"method {request.method} not allowed here (allowed: {allow})",
                    headers={"Allow": allow},
                )
            scope = required_scope(request.method, target.decoded)
            return await self.handle(request, target.encoded, scope)

        return app

    # --- one request ------------------------------------------------------------------------

    def client_address(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        return client_address(peer, request.headers.get("x-forwarded-for"), self.trusted_proxies)

    async def _refuse_path(self, request: Request, problem: BadPath) -> Response:
        # Refused callers still spend their address's budget.
        limited = await self._limit(request, None)
        return limited or error_response(400, f"bad path: {problem}")

    async def _limit(self, request: Request, principal: Principal | None) -> Response | None:
        limits = self.options.limits
        checks = [("address", f"ip:{self.client_address(request)}", limits.per_address)]
        if principal is not None and principal.kind != "anonymous":
            digest = hashlib.sha256(principal.name.encode()).hexdigest()[:24]
            checks.append(("token", f"tok:{digest}", limits.per_token))
        waits = await self.limiter.hit_many([(k, n) for _, k, n in checks], limits.window_s)
        for (budget, _, limit), wait in zip(checks, waits, strict=True):
            if wait is not None:
                LIMITED.labels(result=budget).inc()
                return error_response(
                    429,
                    f"rate limit exceeded ({limit} requests per {limits.window_s:g}s per {budget})",
                    headers={"Retry-After": retry_after_header(wait)},
                )
        return None

    async def handle(self, request: Request, path: str, scope: str | None) -> Response:
        """Forward ``path`` (checked and encoded) once the caller has ``scope``."""
        method = request.method
        principal: Principal | None = None
        try:
            token = bearer(request.headers.get("authorization"))
            if scope is not None:
                principal = await self.authenticator.require(token, scope)
        except AuthError:
            # Refused callers still spend their address's budget: guessing tokens costs too.
            limited = await self._limit(request, None)
            if limited is not None:
                return limited
            raise
        limited = await self._limit(request, principal)
        if limited is not None:
            return limited
        if method == "GET":
            return await self._cached_get(request, path)
        body = await request.body()  # BodyLimit has capped it
        answer = await self._forward(request, path, body, reads=method == "HEAD")
        if answer is None:
            CACHE.labels(result="bypass").inc()
            return error_response(503, "no engine backend answered", "no_backend")
        if 200 <= answer.status_code < 300:
            self._invalidate(affected_prefixes(path))
        return answer

    def _invalidate(self, prefixes: tuple[str, ...]) -> None:
        """Drop cached reads under ``prefixes``; reads already in flight no longer count."""
        if not prefixes:
            return
        self.cache.invalidate(prefixes)
        # A read that joined a flight started before the write would get the old answer.
        for key in [k for k in self._inflight if any(key_under(k, p) for p in prefixes)]:
            del self._inflight[key]

    async def _cached_get(self, request: Request, path: str) -> Response:
        key = cache_key(path, request.url.query)
        found = self.cache.lookup(key, path)
        if found is not None:
            entry, freshness = found
            if freshness == "fresh" or (freshness == "revalidate" and self.pool.any_healthy):
                if freshness == "revalidate":
                    self._revalidate(key, request, path)
                CACHE.labels(result="hit" if freshness == "fresh" else "revalidate").inc()
                outcome = "hit" if freshness == "fresh" else "revalidate"
                return self._from_cache(entry.body, entry.content_type, outcome)
        answer = await self._single_flight(key, request, path)
        if answer is not None:
            CACHE.labels(result="miss").inc()
            return answer
        if found is not None:
            entry, _ = found
            age = entry.age(self.cache.clock())
            body = mark_stale(entry.body, age)
            if body is not None:
                CACHE.labels(result="stale").inc()
                return self._from_cache(body, entry.content_type, "stale")
        CACHE.labels(result="bypass").inc()
        return error_response(503, "no engine backend answered and nothing is cached", "no_backend")

    @staticmethod
    def _from_cache(body: bytes, content_type: str, outcome: str) -> Response:
        return Response(body, media_type=content_type, headers={"X-Cache": outcome})

    async def _single_flight(self, key: str, request: Request, path: str) -> Response | None:
        """Concurrent misses of one key share one backend call."""
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answer = await self._forward(request, path, b"", reads=True, cache_key_=key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved: the raiser below reports it once
            raise
        else:
            future.set_result(answer)
            return answer
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    def _revalidate(self, key: str, request: Request, path: str) -> None:
        if key in self._refreshing:
            return
        headers = self._headers(request)
        query = request.url.query

        async def refresh() -> None:
            try:
                await self._call_backends("GET", path, query, headers, b"", reads=True, key=key)
            finally:
                self._refreshing.pop(key, None)

        self._refreshing[key] = asyncio.create_task(refresh())

    def _headers(self, request: Request) -> dict[str, str]:
        headers = {k: v for k in _FORWARD_HEADERS if (v := request.headers.get(k)) is not None}
        headers[REQUEST_ID_HEADER] = request_id_var.get()
        headers["x-forwarded-for"] = self.client_address(request)
        return headers

    async def _forward(
        self,
        request: Request,
        path: str,
        body: bytes,
        *,
        reads: bool,
        cache_key_: str | None = None,
    ) -> Response | None:
        return await self._call_backends(
            request.method,
            path,
            request.url.query,
            self._headers(request),
            body,
            reads=reads,
            key=cache_key_,
        )

    async def _call_backends(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        *,
        reads: bool,
        key: str | None,
    ) -> Response | None:
        order: list[Backend] = self.pool.for_reads() if reads else self.pool.for_trades()
        epoch = self.cache.epoch
        url_tail = f"{path}?{query}" if query else path
        for attempt, backend in enumerate(order):
            if attempt:
                FAILOVERS.inc()
            try:
                answer = await self.client.request(
                    method,
                    backend.url + url_tail,
                    headers=headers,
                    content=body or None,
                    timeout=_READ_TIMEOUT if reads else _WRITE_TIMEOUT,
                )
            except httpx.InvalidURL as exc:
                # The query string, which travels as the client sent it, is not a valid URL part.
                return error_response(400, f"bad request target: {exc}")
            except httpx.ConnectError as exc:
                self.pool.mark_down(backend, exc)
                continue
            except httpx.HTTPError as exc:
                self.pool.mark_down(backend, exc)
                if reads:
                    continue
                # The write may have reached the engine: retrying elsewhere could double it.
                PROXIED.labels(result="error").inc()
                return error_response(
                    504, "the engine did not answer in time; the request may have been applied"
                )
            PROXIED.labels(result=str(answer.status_code)).inc()
            if reads and answer.status_code in _BROKEN_BACKEND:
                # An engine that fails a read is not an answer while another engine may have one;
                # when none does, the caller falls back to the last good answer.
                self.pool.mark_down(backend, RuntimeError(f"HTTP {answer.status_code}"))
                continue
            content_type = answer.headers.get("content-type", "application/json")
            if key is not None:
                self.cache.store(
                    key, answer.status_code, answer.content, content_type, backend.url, epoch=epoch
                )
            passed = {"X-Cache": "miss"} if reads else {}
            for name in _ANSWER_HEADERS:
                if name in answer.headers:
                    passed[name.title()] = answer.headers[name]
            return Response(
                answer.content,
                status_code=answer.status_code,
                media_type=content_type,
                headers=passed,
            )
        return None
