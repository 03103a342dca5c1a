"""The dashboard server (static files, ``/config.js``, CSP, vendored uPlot), the
``mevstack dashboard`` command's errors, and the page's exact money formatting in Chromium."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser

from mevstack.cli import main
from mevstack.config import Settings, parse_settings
from mevstack.dashboard.server import Endpoints, create_dashboard_app, running_dashboard
from mevstack.devnet.anvil import free_port
from mevstack.errors import ConfigError
from tests.dashboard.conftest import exact_units


def _settings(host: str = "127.0.0.1") -> Settings:
    return parse_settings(
        {"server": {"host": host, "gateway_port": 18093, "ws_port": 18094}},
        source="test",
        environ={},
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_dashboard_app(Endpoints.from_settings(_settings(), health_poll_s=3))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as c:
        yield c


async def test_config_js_tells_the_page_where_the_api_is(client: httpx.AsyncClient) -> None:
    answer = await client.get("/config.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert '"gatewayPort": 18093' in answer.text and '"wsPort": 18094' in answer.text
    assert '"host": "127.0.0.1"' in answer.text and '"healthPollS": 3' in answer.text
    csp = answer.headers["content-security-policy"]
    assert "connect-src 'self' http://127.0.0.1:18093 ws://127.0.0.1:18094" in csp
    assert "script-src 'self';" in csp


async def test_page_modules_and_vendored_uplot_are_served(client: httpx.AsyncClient) -> None:
    index = await client.get("/")
    assert index.status_code == 200 and 'src="/static/js/main.js"' in index.text
    for path in ("/static/js/main.js", "/static/js/api.js", "/static/js/format.js"):
        answer = await client.get(path)
        assert answer.status_code == 200, path
        assert "javascript" in answer.headers["content-type"], path
    uplot = await client.get("/vendor/uplot/uPlot.esm.js")
    assert uplot.status_code == 200 and "export" in uplot.text
    assert (await client.get("/static/nope.js")).status_code == 404


def test_wildcard_host_means_the_pages_own_host() -> None:
    endpoints = Endpoints.from_settings(_settings("0.0.0.0"))
    assert endpoints.to_json()["host"] is None
    assert endpoints.connect_sources() == "http://*:18093 ws://*:18094"


def test_missing_npm_install_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make setup"):
        create_dashboard_app(Endpoints.from_settings(_settings()), uplot_dist=tmp_path)


def test_busy_port_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "mevstack.toml"
        config.write_text(
            f'[engine]\nstate_dir = "{tmp_path}"\n[server]\ndashboard_port = {port}\n',
            encoding="utf-8",
        )
        code = main(["dashboard", "--config", str(config)])
    err = capsys.readouterr().err
    assert code != 0
    assert f"dashboard: cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


async def test_money_is_formatted_exactly_in_the_browser(browser: Browser) -> None:
    settings = parse_settings(
        {"server": {"gateway_port": free_port(), "ws_port": free_port()}},
        source="test",
        environ={},
    )
    rng = random.Random(9)
    values = [0, 1, -1, 10**18, -(10**18) + 1, 2**256 - 1, 123456789, 10**6 - 1]
    values += [rng.randrange(-(2**200), 2**200) for _ in range(40)]
    cases = [(str(v), d) for v in values for d in (0, 6, 18)]
    async with running_dashboard(settings, port=0) as port:
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            shown = await page.evaluate(
                """async (cases) => {
                    const f = await import("/static/js/format.js");
                    return cases.map(([v, d]) => f.formatUnits(v, d));
                }""",
                cases,
            )
            bad = await page.evaluate(
                """async () => {
                    const f = await import("/static/js/format.js");
                    return [f.formatUnits("1.5", 18), f.formatUnits(null, 18),
                            f.formatNative("abc"), f.formatGwei("1000000001")];
                }"""
            )
            tokens = await page.evaluate(
                """async () => {
                    const f = await import("/static/js/format.js");
                    const known = new Map([
                        [f.tokenKey("base", "0xAbC"), {decimals: 6, symbol: "USDC"}],
                        [f.tokenKey("base", "0xdef"), {decimals: 8, symbol: ""}]]);
                    return [f.formatTokenAmount("-1234567", "base", "0xabc", known),
                            f.formatTokenAmount("1234567", "ethereum", "0xabc", known),
                            f.formatTokenAmount("100000000", "base", "0xDEF", known),
                            f.formatTokenAmount("x", "base", "0xabc", known)];
                }"""
            )
        finally:
            await context.close()
    assert shown == [exact_units(int(v), d) for v, d in cases]
    assert bad == ["—", "—", "—", "1.000000001 gwei"]
    # with the token's decimals and symbol where stated (per chain), else marked base units
    assert tokens == ["-1.234567 USDC", "1,234,567 base units", "1", "—"]
