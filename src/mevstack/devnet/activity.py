"""Market activity on the devnet: noise traders swapping through the real routers.

Two halves.  ``choose_trade`` is pure: given a random generator, the pools and how far each pool's
price is from the reference price, it decides who trades what, where and how much (log-uniform
USD sizes).  Direction is a coin flip leaning against the deviation (traders who know the
"real" price), so each pool random-walks around its reference independently of the others:
the DEXes drift apart and back, and arbitrage appears and disappears without prices running away
over a long demo.
``NoiseTraders`` does the I/O: it funds a few of anvil's unlocked accounts, approves the routers
(V2 Router02 of both V2 DEXes, V3 SwapRouter) and sends the chosen swaps.

Traders are anvil accounts 6..9 (accounts 1..5 stay free for other tools, account 0 deployed).
A node that stops answering (killed, restarting, restored from an older state) does not stop
them: each failure is logged and counted, the traders back off (doubling, up to
``MAX_BACKOFF_S``), take their nonces from the node again and carry on once it answers.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from eth_utils.address import to_checksum_address

from mevstack.devnet import catalog
from mevstack.devnet.deploy import DEADLINE, MAX_UINT256, ChainDeployment, PoolInfo
from mevstack.devnet.rpc import AccountSender, DevnetRpc, encode_call
from mevstack.errors import DevnetError

log = logging.getLogger(__name__)

TRADER_ACCOUNTS = range(6, 10)
FUNDING_USD = 100_000_000  # per trader and token: thousands of trades before any runs dry
MIN_TRADE_USD = 200
MAX_TRADE_USD = 40_000
REVERSION = 20.0  # lean per unit of relative deviation: 1 % too high -> 70 % of trades sell
SWAP_GAS = 600_000  # a limit, not a cost estimate: crossing several V3 ticks stays under it
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 8.0

V2_SWAP = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
V3_SWAP = "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
# The first two return words: V2 (reserve0, reserve1), V3 slot0 (sqrtPriceX96, tick).
_STATE_CALL = {"uniswap_v2": encode_call("getReserves()"), "uniswap_v3": encode_call("slot0()")}


@dataclass(frozen=True, slots=True)
class TradeIntent:
    """One swap to send: ``amount_in`` of ``token_in`` for ``token_out`` on ``pool``."""

    trader: int  # index into the trader list
    pool: PoolInfo
    token_in: str
    token_out: str
    amount_in: int


def reference_price(symbol0: str, symbol1: str) -> float:
    """The catalog's price of token0 in raw units of token1 (a screen, not money)."""
    t0, t1 = catalog.ALL_TOKENS[symbol0], catalog.ALL_TOKENS[symbol1]
    return float(t0.usd / t1.usd * Fraction(10) ** (t1.decimals - t0.decimals))


def mid_price(pool: PoolInfo, state: tuple[int, int]) -> float:
    """token1 per token0 from V2 reserves ``(r0, r1)`` or V3 ``(sqrtPriceX96, _)``."""
    if pool.kind == "uniswap_v2":
        r0, r1 = state
        return r1 / r0 if r0 else math.inf
    return (state[0] / catalog.Q96) ** 2


def sell_token0_probability(deviation: float) -> float:
    """Chance a trade sells token0 when the pool prices token0 ``deviation`` above reference."""
    return min(0.9, max(0.1, 0.5 + REVERSION * deviation))


def choose_trade(
    rng: random.Random,
    pools: Sequence[PoolInfo],
    symbols: dict[str, str],
    traders: int,
    deviations: Mapping[str, float] | None = None,
) -> TradeIntent:
    """A random realistic swap: any pool, $200-$40k log-uniformly, direction leaning home.

    ``deviations`` maps pool address -> (mid price / reference price - 1); missing pools are a
    fair coin.
    """
    if not pools or traders < 1:
        raise DevnetError("noise traders need at least one pool and one trader")
    pool = rng.choice(list(pools))
    deviation = (deviations or {}).get(pool.address, 0.0)
    token_in, token_out = (
        (pool.token0, pool.token1)
        if rng.random() < sell_token0_probability(deviation)
        else (pool.token1, pool.token0)
    )
    usd = math.exp(rng.uniform(math.log(MIN_TRADE_USD), math.log(MAX_TRADE_USD)))
    amount = catalog.token_amount(symbols[token_in], Fraction(round(usd * 100), 100))
    return TradeIntent(rng.randrange(traders), pool, token_in, token_out, max(amount, 1))


def swap_call(
    intent: TradeIntent, deployment: ChainDeployment, recipient: str
) -> tuple[str, bytes]:
    """(router address, calldata) for ``intent`` through the pool's own DEX router."""
    pool = intent.pool
    if pool.kind == "uniswap_v2":
        router = next(d.router for d in deployment.v2 if d.name == pool.dex)
        path = [intent.token_in, intent.token_out]
        return router, encode_call(V2_SWAP, intent.amount_in, 0, path, recipient, DEADLINE)
    params = (
        intent.token_in,
        intent.token_out,
        pool.fee,
        recipient,
        DEADLINE,
        intent.amount_in,
        0,
        0,
    )
    return deployment.v3.swap_router, encode_call(V3_SWAP, params)


class NoiseTraders:
    """Sends noise trades on one chain.  ``setup()`` once, then ``step()`` or ``run()``."""

    def __init__(
        self, rpc_url: str, deployment: ChainDeployment, *, seed: int = 0, traders: int = 4
    ) -> None:
        self.rpc = DevnetRpc(rpc_url)
        self.deployment = deployment
        self.rng = random.Random(seed)
        accounts = [str(to_checksum_address(a)) for a in self.rpc.call("eth_accounts")]
        wanted = [i for i in TRADER_ACCOUNTS if i < len(accounts)][:traders]
        if not wanted:
            raise DevnetError(f"node {rpc_url} has too few unlocked accounts for noise traders")
        self.accounts = [accounts[i] for i in wanted]
        self.symbols = {t.address: t.symbol for t in deployment.tokens.values()}
        self.senders: list[AccountSender] = []
        self.sent = 0
        self.reverted = 0
        self.failures = 0  # sends or reads the node did not answer
        self._stale = False  # a failure left the local nonces unsure: take them from the node
        self._unchecked: list[str] = []

    def close(self) -> None:
        self.rpc.close()

    def setup(self) -> None:
        """Fund each trader (minted tokens, wrapped ETH) and approve every router."""
        d = self.deployment
        minter = AccountSender(self.rpc, d.deployer)
        self.senders = [AccountSender(self.rpc, a) for a in self.accounts]
        spenders = [dex.router for dex in d.v2] + [d.v3.swap_router]
        for sender in self.senders:
            for token in d.tokens.values():
                amount = catalog.token_amount(token.symbol, Fraction(FUNDING_USD))
                if token.address == d.weth:
                    sender.send(d.weth, encode_call("deposit()"), value=amount, gas=100_000)
                else:
                    minter.send(
                        token.address,
                        encode_call("mint(address,uint256)", sender.account, amount),
                        gas=100_000,
                    )
                for spender in spenders:
                    sender.send(
                        token.address,
                        encode_call("approve(address,uint256)", spender, MAX_UINT256),
                        gas=100_000,
                    )
        minter.confirm()
        for sender in self.senders:
            sender.confirm()

    def deviations(self) -> dict[str, float]:
        """Every pool's relative distance from its reference price (one batched read)."""
        pools = self.deployment.pools
        calls: list[tuple[str, list[Any]]] = [
            (
                "eth_call",
                [{"to": p.address, "data": "0x" + _STATE_CALL[p.kind].hex()}, "latest"],
            )
            for p in pools
        ]
        out = {}
        for pool, raw in zip(pools, self.rpc.batch(calls), strict=True):
            words = bytes.fromhex(str(raw)[2:])
            state = (int.from_bytes(words[:32], "big"), int.from_bytes(words[32:64], "big"))
            reference = reference_price(self.symbols[pool.token0], self.symbols[pool.token1])
            out[pool.address] = mid_price(pool, state) / reference - 1
        return out

    def step(self) -> str:
        """Choose and send one trade; returns its transaction hash (not waited for)."""
        if not self.senders:
            raise DevnetError("NoiseTraders.setup() must run before trading")
        intent = choose_trade(
            self.rng,
            self.deployment.pools,
            self.symbols,
            traders=len(self.senders),
            deviations=self.deviations(),
        )
        sender = self.senders[intent.trader]
        router, data = swap_call(intent, self.deployment, sender.account)
        try:
            tx_hash = sender.send(router, data, gas=SWAP_GAS, track=False)
        except DevnetError:
            self._stale = True
            raise
        self.sent += 1
        self._unchecked.append(tx_hash)
        return tx_hash

    def check_receipts(self) -> None:
        """Count reverted trades among those mined so far (the rest stay for the next check)."""
        if not self._unchecked:
            return
        receipts = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in self._unchecked])
        still = []
        for tx_hash, receipt in zip(self._unchecked, receipts, strict=True):
            if receipt is None:
                still.append(tx_hash)
            elif int(receipt["status"], 16) != 1:
                self.reverted += 1
        self._unchecked = still

    def run(
        self, stop: threading.Event, *, interval: float, max_backoff: float = MAX_BACKOFF_S
    ) -> None:
        """Trade until ``stop`` is set, on average once per ``interval`` seconds; a node that
        does not answer is retried with a doubling backoff (see the module docstring).

        The waits are pacing, not synchronisation: noise traders act on a clock, like people.
        """
        backoff = 0.0
        while not stop.is_set():
            try:
                if self._stale:
                    for sender in self.senders:
                        sender.resync()
                    self._stale = False
                self.step()
                if self.sent % 20 == 0:
                    self.check_receipts()
            except DevnetError as exc:
                if stop.is_set():
                    return  # the node went away because the devnet is stopping
                self.failures += 1
                self._stale = True
                backoff = min(max_backoff, backoff * 2 or FIRST_BACKOFF_S)
                log.warning("noise traders: %s; retrying in %.2f s", exc, backoff)
                stop.wait(backoff)
                continue
            if backoff:
                log.info("noise traders: node %s answers again; trading", self.rpc.url)
                backoff = 0.0
            stop.wait(self.rng.expovariate(1.0 / interval))
