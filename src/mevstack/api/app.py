"""The engine REST API (port 8082): the FastAPI app factory over an :class:`EngineView`.

Every answer is the envelope or error shape of docs/contracts.md; every ``/api`` path of the
contract exists (features the engine does not run yet answer 503 ``not_available``); the OpenAPI
document carries response schemas for every status an endpoint can give, which the schemathesis test
checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mevstack import __version__
from mevstack.api import schemas as s
from mevstack.api.auth import Authenticator, AuthError, Principal, bearer
from mevstack.api.http import (
    BodyLimit,
    BoundedJSONRoute,
    JSONResponse,
    RequestContext,
    envelope,
    install_error_handlers,
    reject_unknown_query,
)
from mevstack.api.view import EngineView
from mevstack.obs import metrics

OpportunityKind = Literal["arbitrage", "backrun"]
OpportunityStatus = Literal[
    "detected", "simulated", "submitted", "included", "failed", "expired", "rejected"
]
TradeStatus = Literal["pending", "submitted", "included", "failed", "reverted", "cancelled"]

ChainQuery = Annotated[
    str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
LimitQuery = Annotated[int, Query(ge=1, le=1000)]
IdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]

_ERR = {"model": s.ErrorBody}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_ERR, "description": "invalid query or path parameter"},
    401: {**_ERR, "description": "missing, malformed, wrong or expired token"},
    403: {**_ERR, "description": "the token lacks the scope"},
    429: {**_ERR, "description": "rate limited (gateway)"},
    503: {**_ERR, "description": "the feature is not running on this engine"},
}
_ONE_ERRORS = {**_READ_ERRORS, 404: {**_ERR, "description": "no such object"}}
_WRITE_ERRORS = {**_ONE_ERRORS, 409: {**_ERR, "description": "conflicts with the current state"}}

_bearer_scheme = HTTPBearer(auto_error=False, description="API token or session token")


async def _require(request: Request, scope: str) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.require(bearer(request.headers.get("authorization")), scope)


async def _read(
    request: Request,
    _creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
) -> Principal:
    return await _require(request, "read")


async def _trade(
    request: Request,
    _creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
) -> Principal:
    return await _require(request, "trade")


async def _admin(
    request: Request,
    _creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
) -> Principal:
    return await _require(request, "admin")


Read = Annotated[Principal, Security(_read)]
Trade = Annotated[Principal, Security(_trade)]
Admin = Annotated[Principal, Security(_admin)]


def _doc(model: Any, errors: dict[int | str, dict[str, Any]], status: int = 200) -> Any:
    return {status: {"model": model, "description": "success"}, **errors}


def create_app(
    *,
    view: EngineView,
    authenticator: Authenticator,
    title: str = "mevstack engine",
    chains: Sequence[str] | None = None,
) -> FastAPI:
    """The engine API app; ``view`` supplies the data, ``authenticator`` the tokens, ``chains``
    the names of the chains the engine runs (the document then lists them)."""
    app = FastAPI(
        title=title,
        version=__version__,
        docs_url=None,
        redoc_url=None,
        default_response_class=JSONResponse,
        dependencies=[Depends(reject_unknown_query)],
        # "/api/trades/" is not a path of the API: a 404, not a redirect to guess at.
        redirect_slashes=False,
    )
    app.router.route_class = BoundedJSONRoute
    app.state.authenticator = authenticator
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestContext)

    def wrap(data: Any, **extra: Any) -> JSONResponse:
        return JSONResponse(envelope(data, view.source, **extra))

    @app.get("/health", response_model=None, responses={200: {"model": s.Health}})
    async def health() -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "backends": [], "version": __version__, **view.health()}
        )

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post(
        "/api/auth/login",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Session], _READ_ERRORS),
    )
    async def login(
        request: Request, body: Annotated[s.LoginRequest | None, Body()] = None
    ) -> JSONResponse:
        token = body.token if body is not None else bearer(request.headers.get("authorization"))
        if not token:
            raise AuthError('login needs an API token (JSON body {"token": …} or Bearer)')
        who = await authenticator.authenticate(token)
        if who is None or who.kind != "api_token":
            raise AuthError("login needs an API token, not a session token")
        session, expires = authenticator.signer.issue(who)
        expires_iso = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
        return wrap(
            {
                "session_token": session,
                "token_type": "Bearer",
                "name": who.name,
                "scopes": sorted(who.scopes),
                "expires_at": expires_iso,
            }
        )

    @app.get(
        "/api/nodes",
        response_model=None,
        responses=_doc(s.ListEnvelope[s.NodeStatus], _READ_ERRORS),
    )
    async def nodes(_: Read) -> JSONResponse:
        return wrap(view.nodes())

    @app.get(
        "/api/gas", response_model=None, responses=_doc(s.ListEnvelope[s.GasQuote], _READ_ERRORS)
    )
    async def gas(_: Read) -> JSONResponse:
        return wrap(view.gas())

    @app.get(
        "/api/mev/opportunities",
        response_model=None,
        responses=_doc(s.ListEnvelope[s.Opportunity], _READ_ERRORS),
    )
    async def opportunities(
        _: Read,
        chain: ChainQuery = None,
        kind: OpportunityKind | None = None,
        status: OpportunityStatus | None = None,
        limit: LimitQuery = 100,
    ) -> JSONResponse:
        found = await view.opportunities(chain=chain, kind=kind, status=status, limit=limit)
        return wrap(found)

    @app.get(
        "/api/mev/opportunities/{opportunity_id}",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Opportunity], _ONE_ERRORS),
    )
    async def opportunity(_: Read, opportunity_id: IdPath) -> JSONResponse:
        return wrap(await view.opportunity(opportunity_id))

    @app.post(
        "/api/mev/opportunities/{opportunity_id}/execute",
        status_code=202,
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Trade], _WRITE_ERRORS, status=202),
    )
    async def execute(
        _: Trade,
        opportunity_id: IdPath,
        idempotency_key: Annotated[
            str | None, Header(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
        ] = None,
    ) -> JSONResponse:
        started = await view.execute(opportunity_id, idempotency_key)
        return JSONResponse(envelope(started, view.source), status_code=202)

    @app.get(
        "/api/mev/metrics",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Record], _READ_ERRORS),
    )
    async def mev_metrics(_: Read) -> JSONResponse:
        return wrap(await view.metrics_summary())

    @app.get(
        "/api/trades", response_model=None, responses=_doc(s.ListEnvelope[s.Trade], _READ_ERRORS)
    )
    async def trades(
        _: Read,
        chain: ChainQuery = None,
        status: TradeStatus | None = None,
        cursor: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=256,
                pattern=r"^[A-Za-z0-9_=-]+$",
                description=(
                    "Opaque: the meta.next_cursor of the previous page. Only a cursor the API"
                    " handed out is valid; any other value is a 400."
                ),
            ),
        ] = None,
        limit: LimitQuery = 100,
    ) -> JSONResponse:
        page = await view.trades(chain=chain, status=status, cursor=cursor, limit=limit)
        return wrap(page.items, next_cursor=page.next_cursor)

    @app.get(
        "/api/trades/{trade_id}",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Trade], _ONE_ERRORS),
    )
    async def trade_by_id(_: Read, trade_id: IdPath) -> JSONResponse:
        return wrap(await view.trade(trade_id))

    @app.get(
        "/api/trading/state",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Record], _READ_ERRORS),
    )
    async def trading_state(_: Read) -> JSONResponse:
        return wrap(await view.trading_state())

    @app.patch(
        "/api/trading/state",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Record], _WRITE_ERRORS),
    )
    async def patch_trading_state(_: Admin, changes: s.PatchTradingState) -> JSONResponse:
        # null means "leave it", at any depth
        return wrap(await view.patch_trading_state(changes.model_dump(exclude_none=True)))

    @app.get(
        "/api/agents", response_model=None, responses=_doc(s.ListEnvelope[s.Record], _READ_ERRORS)
    )
    async def agents(_: Read) -> JSONResponse:
        return wrap(await view.agents())

    @app.post(
        "/api/agents/{agent_id}/start",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Record], _WRITE_ERRORS),
    )
    async def start_agent(_: Admin, agent_id: IdPath) -> JSONResponse:
        return wrap(await view.set_agent_running(agent_id, True))

    @app.post(
        "/api/agents/{agent_id}/stop",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Record], _WRITE_ERRORS),
    )
    async def stop_agent(_: Admin, agent_id: IdPath) -> JSONResponse:
        return wrap(await view.set_agent_running(agent_id, False))

    @app.get(
        "/api/exploits",
        response_model=None,
        responses=_doc(s.ListEnvelope[s.Record], _READ_ERRORS),
    )
    async def exploits(_: Read) -> JSONResponse:
        return wrap(await view.exploits())

    @app.post(
        "/api/exploits",
        response_model=None,
        responses=_doc(s.ObjectEnvelope[s.Record], _WRITE_ERRORS),
    )
    async def add_exploit(_: Admin, alert: s.ExploitAlertIn) -> JSONResponse:
        return wrap(await view.add_exploit(alert.model_dump(exclude_none=True)))

    if chains is not None:
        _name_the_chains(app, list(chains))
    return app


def _name_the_chains(app: FastAPI, chains: list[str]) -> None:
    """The OpenAPI document lists the engine's chains wherever a request names one."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _enum_chains(build(), chains)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _enum_chains(node: Any, chains: list[str]) -> Any:
    if isinstance(node, dict):
        if node.get(s.CHAIN_MARK) is True:
            return {"type": "string", "enum": chains}
        return {key: _enum_chains(value, chains) for key, value in node.items()}
    if isinstance(node, list):
        return [_enum_chains(item, chains) for item in node]
    return node
