"""Conformance through the gateway: schemathesis over real HTTP, gateway in front of an engine.

The engine is the conformance engine of ``tests/api/test_schemathesis.py`` (real trading state and
exploit alerts); both servers run under uvicorn, in a thread with its own event loop, exactly as
they are configured in production.  The checks are the engine test's: every built-in check, an
admin and a read token.  What the gateway adds must conform too: its path handling, its 405s and
their ``Allow``, its error envelopes.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from mevstack.api.server import running_uvicorn
from mevstack.devnet.anvil import free_port
from mevstack.gateway.app import Gateway, GatewayOptions
from mevstack.gateway.ratelimit import RateLimits
from tests.api.conftest import make_authenticator
from tests.api.test_schemathesis import build_conformance_app, check_case


class Stack(threading.Thread):
    """Engine and gateway listening on free ports until :meth:`stop`."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(name="schemathesis-stack", daemon=True)
        self.state_dir = state_dir
        self.gateway_url = ""
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test through start_and_wait
            self.failed = exc
            self.ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        engine_port, gateway_port = free_port(), free_port()
        engine = build_conformance_app(self.state_dir)
        gateway = Gateway(
            GatewayOptions(
                backends=[f"http://127.0.0.1:{engine_port}"],
                limits=RateLimits(per_token=10**6, per_address=10**6, window_s=1.0),
            ),
            make_authenticator(self.state_dir, public_read=False),
        )
        async with (
            running_uvicorn(engine, "127.0.0.1", engine_port, "engine API"),
            running_uvicorn(gateway.app, "127.0.0.1", gateway_port, "gateway"),
        ):
            self.gateway_url = f"http://127.0.0.1:{gateway_port}"
            self.ready.set()
            await self._done.wait()

    def start_and_wait(self) -> None:
        self.start()
        assert self.ready.wait(60), "the stack did not start within 60 s"
        if self.failed is not None:
            raise self.failed

    def stop(self) -> None:
        if self._loop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self.join(30)


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = Stack(tmp_path_factory.mktemp("gateway-schemathesis"))
    stack.start_and_wait()
    try:
        with httpx.Client() as http:
            served = http.get(f"{stack.gateway_url}/openapi.json").json()
        # the document the cases come from is the one the gateway serves
        assert served == _DOCUMENT
        yield stack.gateway_url
    finally:
        stack.stop()


_scratch = Path(tempfile.mkdtemp(prefix="mevstack-gw-schemathesis-"))
atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
_DOCUMENT = build_conformance_app(_scratch).openapi()
schema = schemathesis.openapi.from_dict(_DOCUMENT)


@pytest.mark.parametrize("who", ["admin", "reader"])
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_gateway_conforms_to_the_document(
    case: schemathesis.Case[Any], who: str, gateway_url: str
) -> None:
    check_case(case, who, base_url=gateway_url)
