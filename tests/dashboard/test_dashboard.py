"""The dashboard in real Chromium against the real stack (``mevstack up``'s engine, gateway and
WebSocket on a mining devnet chain): login, live panels, controls by scope, honest staleness.

The tests share one stack and run in file order; the one before last kills the second chain's
node, the last one the engine's API.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.async_api import Page, expect

from mevstack.bus.base import DEFAULT_REPLAY_SIZE
from mevstack.devnet.anvil import Anvil
from mevstack.devnet.deploy import ChainDeployment
from mevstack.devnet.rpc import DevnetRpc
from mevstack.events import EventName
from mevstack.store import Trade
from tests.dashboard.conftest import TOKENS, Stack, exact_units, login, screenshot
from tests.engine.world import Trader
from tests.waiting import wait_until

LIVE_TIMEOUT_MS = 30_000


async def _api(stack: Stack, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKENS[who][0]}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as client:
        return await client.request(method, path, headers=headers, **kw)


async def _settled(
    stack: Stack, path: str, done: Callable[[Any], bool], within_s: float = 10
) -> Any:
    """The API's answer once it satisfies ``done`` (the gateway caches GETs for ~1 s)."""
    async with asyncio.timeout(within_s):
        while True:
            data = (await _api(stack, "ops", "GET", path)).json()["data"]
            if done(data):
                return data
            await asyncio.sleep(0.1)  # poll interval of a condition with a deadline


async def _plant(stack: Stack) -> dict[str, Any]:
    """A large WETH→USDC buy on uniswap-v2; answers the opportunity the engine then publishes
    through that pool (as the API lists it)."""
    dep = stack.dep
    uni = dep.pool("uniswap-v2", "WETH", "USDC")
    rpc = DevnetRpc(stack.node.rpc_url, timeout=60)
    try:
        trader = await asyncio.to_thread(Trader, rpc, dep)
        await asyncio.to_thread(trader.swap, uni, dep.weth, dep.token("USDC").address, 200 * 10**18)
        planted_at = int(rpc.call("eth_blockNumber"), 16)
    finally:
        rpc.close()
    path = "/api/mev/opportunities?chain=ethereum&status=detected&limit=50"

    def ours(o: dict[str, Any]) -> bool:
        through = {h["pool"] for h in o["path"]}
        return uni.address in through and o["block_number"] >= planted_at and o["token"] == dep.weth

    listed = await _settled(stack, path, lambda data: any(ours(o) for o in data), within_s=30)
    return next(o for o in listed if ours(o))


async def test_wrong_token_is_refused_with_a_message(stack: Stack, page: Page) -> None:
    await page.goto(stack.dashboard_url)
    await page.fill("#login-token", "mvt_not_a_real_token")
    await page.click("#login-submit")
    await expect(page.locator("#login-error")).to_contain_text("invalid API token")
    await expect(page.locator("#app")).to_be_hidden()


async def test_nodes_gas_and_a_planted_opportunity_appear_live(stack: Stack, page: Page) -> None:
    await login(page, stack.dashboard_url, "ops")
    for chain in ("ethereum", "base"):
        nodes = page.locator(f'[data-testid="panel-nodes"] tr[data-chain="{chain}"]')
        await expect(nodes.first).to_contain_text("ok", timeout=LIVE_TIMEOUT_MS)
        await expect(nodes.first).to_contain_text("primary")
        gas = page.locator(f'[data-testid="panel-gas"] tr[data-chain="{chain}"]')
        await expect(gas).to_contain_text("gwei", timeout=LIVE_TIMEOUT_MS)
    # the exact figures on screen are the API's, digit for digit
    quotes = (await _api(stack, "ops", "GET", "/api/gas")).json()["data"]
    assert {q["chain"] for q in quotes} == {"ethereum", "base"}
    await expect(page.locator('[data-testid="ws-state"]')).to_have_text("live")

    # plant a price difference on the real pools; the engine finds it and the tape shows it
    found = await _plant(stack)
    row = page.locator(f'[data-testid="panel-opps"] tr[data-id="{found["id"]}"]')
    await expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(row).to_contain_text("arbitrage")

    # the detail view: every hop, exact vs estimate, amounts exactly as the API gave them
    await row.click()
    detail = page.locator('[data-testid="opp-detail"]')
    await expect(detail).to_be_visible()
    shown = await page.evaluate(f"window.__mevstack.opps.get({found['id']!r})")
    assert shown["path"] and len(shown["path"]) >= 2
    for hop in shown["path"]:
        await expect(detail).to_contain_text(hop["amount_out"])
    exact = detail.locator("dd", has=page.locator(".tag.exact"))
    estimates = detail.locator("dd", has=page.locator(".tag.estimate"))
    await expect(exact).to_have_count(3)
    await expect(estimates).to_have_count(4)
    net = int(shown["net_profit_wei"])
    net_row = detail.locator("dd", has_text="estimate").last
    await expect(net_row).to_contain_text(exact_units(net, 18))
    await screenshot(page, "opportunity-detail")
    await page.click('[data-testid="opp-detail"] header button')
    await expect(detail).to_be_hidden()

    # filters: a status nothing has yet empties the tape, and says so
    await page.select_option("#f-status", "rejected")
    await expect(page.locator('[data-testid="panel-opps"] .panel-state')).to_have_text(
        "no opportunities match"
    )
    await page.select_option("#f-status", "")
    await expect(row).to_be_visible()
    for agent in ("arbitrage:ethereum", "arbitrage:base"):
        row = page.locator(f'[data-testid="panel-agents"] tr[data-id="{agent}"]')
        await expect(row).to_contain_text("running")
    await screenshot(page, "dashboard")


async def test_trader_executes_and_sees_the_trade_included_with_its_profit(
    stack: Stack, page: Page
) -> None:
    await login(page, stack.dashboard_url, "trader")
    found = await _plant(stack)
    # token units come from the market's token metadata, read from the chain
    assert (found["token_symbol"], found["token_decimals"]) == ("WETH", 18)
    row = page.locator(f'[data-testid="panel-opps"] tr[data-id="{found["id"]}"]')
    await expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(row).to_contain_text(exact_units(int(found["amount_in"]), 18) + " WETH")
    await row.click()
    await page.click("#execute")
    result = page.locator("#execute-result")
    await expect(result).to_have_text(re.compile(r"^trade \S+: submitted$"), timeout=20_000)
    trade_id = (await result.inner_text()).split()[1].rstrip(":")

    # the receipt settles it: the row turns `included` with the realized profit the API reports
    trade_row = page.locator(f'[data-testid="panel-trades"] tr[data-id="{trade_id}"]')
    await expect(trade_row.locator("td").nth(2)).to_have_text("included", timeout=30_000)
    trade = await _settled(stack, f"/api/trades/{trade_id}", lambda t: t["status"] == "included")
    realized = int(trade["realized_profit"])
    assert realized > 0 and trade["opportunity_id"] == found["id"]
    cells = trade_row.locator("td")
    await expect(cells.nth(5)).to_have_text(exact_units(realized, 18) + " WETH")
    await expect(cells.nth(7)).to_have_text(exact_units(int(trade["gas_cost_wei"]), 18) + " ETH")
    net = int(trade["net_pnl_wei"])
    await expect(cells.nth(8)).to_have_text(exact_units(net, 18) + " ETH")
    assert trade["tx_hashes"] and net == realized - int(trade["gas_cost_wei"])
    # the day's P&L in the trading state follows the trade (the only one of the day so far)
    pnl_today = page.locator('[data-testid="panel-trading"] dt:text-is("P&L today") + dd')
    await expect(pnl_today).to_have_text(
        re.compile("^" + re.escape(exact_units(net, 18)) + " ETH \\("), timeout=15_000
    )
    # and per chain, in the chain's own currency
    chain_pnl = page.locator('[data-testid="panel-trading"] tr[data-chain="ethereum"] .pnl-today')
    await expect(chain_pnl).to_have_text(exact_units(net, 18) + " ETH")
    await expect(cells.nth(3)).to_have_text(
        trade["tx_hashes"][0][:8] + "…" + trade["tx_hashes"][0][-4:]
    )
    # a trader sees no admin controls
    await expect(page.locator("#kill-toggle")).to_have_count(0)
    await expect(page.locator(".agent-toggle")).to_have_count(0)
    await page.click('[data-testid="opp-detail"] header button')
    await expect(page.locator("#pnl-chart .uplot")).to_have_count(1, timeout=10_000)
    # a real trade, executed on the devnet chain from this page: the README shows it
    await screenshot(page, "trader-execute-included", publish=True)


async def test_kill_switch_needs_confirmation(stack: Stack, page: Page) -> None:
    await login(page, stack.dashboard_url, "ops")
    state = page.locator("#kill-state")
    await expect(state).to_have_text("off", timeout=LIVE_TIMEOUT_MS)
    await page.click("#kill-toggle")
    await page.click("#kill-cancel")
    await expect(page.locator("#modal")).to_be_hidden()
    assert (await _api(stack, "ops", "GET", "/api/trading/state")).json()["data"][
        "kill_switch"
    ] is False

    await page.click("#kill-toggle")
    await page.fill("#kill-reason", "dashboard test")
    await page.click("#kill-confirm")
    await expect(state).to_have_text("ON — dashboard test")
    await expect(page.locator("#kill-badge")).to_be_visible()
    data = await _settled(stack, "/api/trading/state", lambda d: d["kill_switch"] is True)
    assert data["kill_reason"] == "dashboard test"
    await screenshot(page, "kill-switch-on")

    await page.click("#kill-toggle")
    await page.click("#kill-confirm")
    await expect(state).to_have_text("off")


async def test_admin_pauses_and_restarts_an_agent(stack: Stack, page: Page) -> None:
    await login(page, stack.dashboard_url, "ops")
    agent = page.locator('[data-testid="panel-agents"] tr[data-id="arbitrage:ethereum"]')
    await expect(agent).to_contain_text("running", timeout=LIVE_TIMEOUT_MS)
    await agent.locator(".agent-toggle").click()
    await expect(agent.locator("td").nth(1)).to_have_text("stopped")
    await _settled(
        stack,
        "/api/agents",
        lambda listed: {a["id"]: a["state"] for a in listed}["arbitrage:ethereum"] == "stopped",
    )
    await screenshot(page, "agent-stopped")
    await agent.locator(".agent-toggle").click()
    await expect(agent.locator("td").nth(1)).to_have_text(re.compile("starting|running"))


async def test_read_only_user_sees_no_controls_and_the_api_refuses(
    stack: Stack, page: Page
) -> None:
    await login(page, stack.dashboard_url, "viewer")
    first = page.locator('[data-testid="panel-opps"] tr[data-id]').first
    await expect(first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await first.click()
    await expect(page.locator('[data-testid="opp-detail"]')).to_be_visible()
    await expect(page.locator("#execute")).to_have_count(0)
    await expect(page.locator("#kill-toggle")).to_have_count(0)
    await expect(page.locator('[data-testid="panel-agents"] tr[data-id]')).not_to_have_count(0)
    await expect(page.locator(".agent-toggle")).to_have_count(0)
    # the session token the page holds cannot do more than the page shows
    opp_id = await first.get_attribute("data-id")
    status = await page.evaluate(
        """async ([gateway, id]) => {
            const s = window.__mevstack.session.session_token;
            const r = await fetch(`${gateway}/api/mev/opportunities/${id}/execute`,
                {method: "POST", headers: {Authorization: `Bearer ${s}`}});
            return r.status;
        }""",
        [stack.gateway_url, opp_id],
    )
    assert status == 403
    await screenshot(page, "read-only")


async def test_session_expiry_and_logout_return_to_login(stack: Stack, page: Page) -> None:
    await login(page, stack.dashboard_url, "viewer")
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('mevstack.session')") is None

    # a session the API no longer accepts (here: tampered) sends the page back to login
    await login(page, stack.dashboard_url, "viewer")
    await page.evaluate(
        """() => {
            const s = window.__mevstack.session;
            s.session_token = s.session_token.slice(0, -4) + "AAAA";
        }"""
    )
    await page.evaluate("window.__mevstack.api.get('/api/nodes').catch(() => null)")
    await expect(page.locator("#login-error")).to_contain_text("sign in again")

    # a session that runs out while the page is open sends it back to login at that moment
    await login(page, stack.dashboard_url, "viewer")
    await page.evaluate(
        """() => {
            const s = JSON.parse(sessionStorage.getItem('mevstack.session'));
            s.expires_at = new Date(Date.now() + 4000).toISOString();
            sessionStorage.setItem('mevstack.session', JSON.stringify(s));
        }"""
    )
    await page.reload()
    await expect(page.locator("#login-error")).to_contain_text("session expired", timeout=10_000)

    # an expired session is never used
    await page.evaluate(
        """() => sessionStorage.setItem('mevstack.session', JSON.stringify({
            session_token: 'mvs1.x.y', name: 'viewer', scopes: ['read'],
            expires_at: '2000-01-01T00:00:00Z'}))"""
    )
    await page.reload()
    await expect(page.locator("#login")).to_be_visible()


async def test_reconnect_resumes_with_since_and_no_gap(stack: Stack, page: Page) -> None:
    await login(page, stack.dashboard_url, "ops")
    await expect(page.locator('[data-testid="ws-state"]')).to_have_text(
        "live", timeout=LIVE_TIMEOUT_MS
    )
    await page.wait_for_function("() => window.__mevstack.blockLog.length >= 1", timeout=10_000)
    # drop the connection and stay away for a few blocks (1 s each)
    await page.evaluate(
        "() => { const s = window.__mevstack.stream; s.retryMs = 3000; s.ws.close(); }"
    )
    banner = page.locator('[data-testid="stale-banner"]')
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("live feed disconnected")
    await expect(banner).to_contain_text(re.compile(r"Data on screen is .+ old"))
    before = await page.evaluate("window.__mevstack.blockLog.length")
    await expect(page.locator('[data-testid="ws-state"]')).to_have_text("live", timeout=10_000)
    await expect(banner).to_be_hidden()
    await page.wait_for_function(
        f"() => window.__mevstack.blockLog.length >= {before} + 5", timeout=10_000
    )
    by_chain: dict[str, list[int]] = {}
    for chain, number, _ in await page.evaluate("window.__mevstack.blockLog"):
        by_chain.setdefault(chain, []).append(number)
    assert set(by_chain) == {"ethereum", "base"}
    for numbers in by_chain.values():
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), by_chain


async def test_resync_when_the_replay_buffer_no_longer_reaches_back(
    stack: Stack, page: Page
) -> None:
    await login(page, stack.dashboard_url, "ops")
    ws_state = page.locator('[data-testid="ws-state"]')
    await expect(ws_state).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    await page.wait_for_function("() => window.__mevstack.stream.lastSeq > 0", timeout=10_000)
    await page.evaluate(
        "() => { const s = window.__mevstack.stream; s.retryMs = 4000; s.ws.close(); }"
    )
    await expect(ws_state).to_have_text("disconnected")
    # While the page is away, more events pass than the bus's replay buffer holds.
    bus = stack.process.engine.bus
    for n in range(DEFAULT_REPLAY_SIZE + 1):
        await bus.publish(EventName.CHAIN_REORG, "replay-filler", {"filler": n})
    reloads: list[str] = []
    page.on(
        "request", lambda r: reloads.append(r.url) if "/api/mev/opportunities" in r.url else None
    )
    await expect(ws_state).to_have_text("live", timeout=15_000)
    # the server answered `resync`; the page reloaded its state over REST instead of replaying
    await page.wait_for_function("() => window.__mevstack.resyncs === 1", timeout=10_000)
    await expect(page.locator('[data-testid="panel-system"]')).to_contain_text("resyncs")
    await wait_until(lambda: bool(reloads), 5, "a REST reload after the resync")
    assert await page.evaluate("() => window.__mevstack.reorgs") == 0


async def test_trades_and_pnl_from_the_store_and_live(stack: Stack, page: Page) -> None:
    # Rendering of statuses and signs the devnet does not produce on demand (a revert): rows
    # written through the real store API and announced on the real bus, as the executor does.
    # Its screenshot is for the test run only, never the README's.  They are on the chain without
    # an executor: the live engine's tracker would (rightly) find their made-up hashes nowhere on
    # the chain with one and send them back to `submitted` as reorged out.
    store = stack.process.engine.store
    bus = stack.process.engine.bus
    token = stack.dep.weth
    first = Trade(
        id="dash-trade-1",
        chain="base",
        route="public",
        token=token,
        status="included",
        expected_profit=2_000_000_000_000_000_123,
        realized_profit=2_000_000_000_000_000_123,
        gas_used=181_234,
        gas_cost_wei=181_234 * 1_000_000_007,
        net_pnl_wei=123_456_789_012_345_678_901,
        block_number=5,
        confirmations=2,
        tx_hashes=("0x" + "ab" * 32,),
    )
    await asyncio.to_thread(store.insert_trade, first)
    # the gateway may serve its cached list for a moment; the page loads once that has passed
    await _settled(stack, "/api/trades?limit=200", lambda ts: any(t["id"] == first.id for t in ts))
    await login(page, stack.dashboard_url, "ops")
    row = page.locator('[data-testid="panel-trades"] tr[data-id="dash-trade-1"]')
    await expect(row).to_contain_text("included", timeout=LIVE_TIMEOUT_MS)
    await expect(row).to_contain_text(exact_units(123_456_789_012_345_678_901, 18))
    await expect(row).to_contain_text("0xababab…abab")
    await expect(row).to_contain_text(exact_units(181_234 * 1_000_000_007, 18))

    second = Trade(
        id="dash-trade-2",
        chain="base",
        route="public",
        token=token,
        status="reverted",
        expected_profit=10**15,
        realized_profit=0,
        gas_used=50_000,
        gas_cost_wei=50_000 * 10**9,
        net_pnl_wei=-(50_000 * 10**9),
        block_number=6,
        tx_hashes=("0x" + "cd" * 32,),
    )
    stored = await asyncio.to_thread(store.insert_trade, second)
    await bus.publish(EventName.TRADE_FAILED, "base", stored.to_json())
    live = page.locator('[data-testid="panel-trades"] tr[data-id="dash-trade-2"]')
    await expect(live).to_contain_text("reverted")
    await expect(live).to_contain_text("-" + exact_units(50_000 * 10**9, 18))
    await expect(page.locator("#pnl-chart .uplot")).to_have_count(1, timeout=5_000)
    await screenshot(page, "trades-rendering")


async def test_alert_banner_says_when_trading_cannot_happen(
    stack: Stack, page: Page, second_chain: tuple[Anvil, ChainDeployment]
) -> None:
    await login(page, stack.dashboard_url, "ops")
    await expect(page.locator('[data-testid="panel-nodes"] tr[data-chain]').first).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    banner = page.locator('[data-testid="alert-banner"]')
    await expect(banner).to_be_hidden()

    # the kill switch, engaged by someone else through the API: the page's poll shows it
    answer = await _api(
        stack, "ops", "PATCH", "/api/trading/state", json={"kill_switch": True, "reason": "drill"}
    )
    assert answer.status_code == 200 and answer.json()["data"]["alerts"][0]["kind"] == "kill_switch"
    kill = banner.locator('.alert[data-kind="kill_switch"]')
    await expect(kill).to_contain_text("Kill switch ON: kill switch engaged: drill", timeout=10_000)
    await screenshot(page, "alert-kill-switch")
    await _api(stack, "ops", "PATCH", "/api/trading/state", json={"kill_switch": False})
    await expect(banner).to_be_hidden(timeout=10_000)

    # the operator's balance (100 ETH) under a floor of 1,000 ETH
    floor = {"limits": {"ethereum": {"min_native_balance_wei": str(1000 * 10**18)}}}
    assert (await _api(stack, "ops", "PATCH", "/api/trading/state", json=floor)).status_code == 200
    low = banner.locator('.alert[data-kind="balance_low"][data-chain="ethereum"]')
    await expect(low).to_contain_text("Balance low · ethereum: operator balance", timeout=15_000)
    await expect(low).to_contain_text("(ETH)")
    balance = page.locator('[data-testid="panel-trading"] tr[data-chain="ethereum"] td.neg')
    await expect(balance.first).to_contain_text(" ETH")
    # the executor's inventory is what the chain says it holds, to the wei
    with DevnetRpc(stack.node.rpc_url) as rpc:
        held = await asyncio.to_thread(
            rpc.view, stack.dep.weth, "balanceOf(address)", ["uint256"], stack.operator.executor
        )
    state = await _settled(
        stack,
        "/api/trading/state",
        lambda d: d["chains"]["ethereum"]["executor_balance_wei"] == str(held),
    )
    assert state["chains"]["ethereum"]["balance_low"] == ["operator"]
    unfloor = {"limits": {"ethereum": {"min_native_balance_wei": "0"}}}
    assert (
        await _api(stack, "ops", "PATCH", "/api/trading/state", json=unfloor)
    ).status_code == 200
    await expect(banner).to_be_hidden(timeout=15_000)

    # the second chain's only node dies: the chain is down
    second_chain[0].kill()
    down = banner.locator('.alert[data-kind="chain_down"][data-chain="base"]')
    await expect(down).to_contain_text("Chain down · base: no healthy node", timeout=20_000)
    await expect(banner.locator(".alert")).to_have_count(1)
    await screenshot(page, "alert-chain-down")


async def test_stale_banner_when_the_gateways_backend_dies(stack: Stack, page: Page) -> None:
    await login(page, stack.dashboard_url, "ops")
    await expect(page.locator('[data-testid="panel-nodes"] tr[data-chain]').first).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    banner = page.locator('[data-testid="stale-banner"]')
    await expect(banner).to_be_hidden()
    # kill the engine API behind the gateway (the gateway and WebSocket stay up)
    process = stack.process
    engine_port = stack.settings.server.engine_port
    at = next(i for i, s in enumerate(process.servers) if s.config.port == engine_port)
    process.servers[at].should_exit = True
    await process.tasks[at]
    # the page checks backend health every few seconds (the data itself is pushed)
    await expect(banner).to_be_visible(timeout=20_000)
    await expect(banner).to_contain_text("gateway backend down")
    await expect(banner).to_contain_text(re.compile(r"Data on screen is .+ old"))
    await expect(page.locator('[data-testid="panel-system"]')).to_contain_text("down")
    # the panels now show the gateway's last good answers, marked stale with their age
    trading_state = page.locator('[data-testid="panel-trading"] .panel-state')
    await expect(trading_state).to_have_attribute("data-state", "stale")
    await expect(trading_state).to_contain_text(re.compile(r"stale: cached answer .+ old"))
    await expect(banner).to_contain_text("cached data in")
    await screenshot(page, "stale-backend-down")
