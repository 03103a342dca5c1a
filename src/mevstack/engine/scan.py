"""``mevstack scan --once``: connect, sync pools, scan the latest block of every chain once.

Chains are scanned concurrently, each at its own latest block: the endpoint pool verifies the
chain id, the market discovers and loads every pool of the configured DEXes at that block, the
gas oracle quotes that block, and the arbitrage scanner runs one full scan.  A chain that cannot
be scanned becomes one line naming it; the caller decides whether the others' results still count
(``--partial``).  Nothing here prints: :func:`render_text` formats for humans, the CLI prints.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mevstack.chain.endpoints import EndpointPool
from mevstack.chain.gas import GasOracle
from mevstack.chain.heads import BlockHeader
from mevstack.config import ChainConfig, Settings
from mevstack.engine.chain_runtime import Market, PoolStates, gas_inputs
from mevstack.errors import MevstackError
from mevstack.events import utc_now_iso
from mevstack.strategy.arbitrage import ArbitrageScanner, ChainTerms
from mevstack.strategy.opportunity import Opportunity


class ChainScanFailed(MevstackError):
    """One chain could not be scanned (unreachable, wrong chain, bad node data)."""


class ScanIncomplete(MevstackError):
    """Some configured chains could not be scanned (exit code 4, also with ``--partial``)."""

    exit_code = 4


@dataclass(frozen=True, slots=True)
class ChainScan:
    chain: str
    block_number: int
    pools: int
    opportunities: list[Opportunity]


@dataclass
class ScanReport:
    scans: list[ChainScan] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one line per chain that failed

    @property
    def opportunities(self) -> list[Opportunity]:
        return [o for s in self.scans for o in s.opportunities]


async def scan_chain(config: ChainConfig, *, check_tokens: bool = True) -> ChainScan:
    """One full scan of ``config``'s latest block; raises ChainScanFailed naming the chain.

    ``check_tokens=False`` skips the unsafe-token round trips (tests show what they prevent)."""
    pool = EndpointPool(
        config.name, config.chain_id, list(config.rpc), block_time=config.block_time
    )
    try:
        await pool.probe_all()
        raw = await pool.request("eth_getBlockByNumber", ["latest", False])
        if raw is None:
            raise ChainScanFailed(f"chain {config.name}: the node has no latest block")
        header = BlockHeader.from_rpc(raw)
        market = Market(config, pool, check_tokens=check_tokens)
        pools = await market.build(header.number, header.hash)
        quote = await GasOracle(config.name, pool, chain_id=config.chain_id).quote(raw)
        scanner = ArbitrageScanner(ChainTerms.from_config(config))
        scanner.add_pools(pools.infos())
        found = scanner.scan(
            PoolStates(pools),
            block_number=header.number,
            gas=gas_inputs(quote),
            detected_at=utc_now_iso(),
        )
        return ChainScan(config.name, header.number, len(pools), found)
    except ChainScanFailed:
        raise
    except MevstackError as exc:
        raise ChainScanFailed(f"chain {config.name}: cannot scan: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainScanFailed(
            f"chain {config.name}: the node sent malformed data: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        await pool.aclose()


async def scan_once(settings: Settings) -> ScanReport:
    """Every configured chain, concurrently; failures are collected, not raised."""
    if not settings.chains:
        raise MevstackError("no [[chains]] configured: nothing to scan")
    outcomes = await asyncio.gather(
        *(scan_chain(c) for c in settings.chains), return_exceptions=True
    )
    report = ScanReport()
    for chain, outcome in zip(settings.chains, outcomes, strict=True):
        if isinstance(outcome, ChainScan):
            report.scans.append(outcome)
        elif isinstance(outcome, ChainScanFailed):
            report.failures.append(str(outcome))
        elif isinstance(outcome, BaseException):
            raise outcome  # a bug, not a chain problem: keep its traceback
        else:
            report.failures.append(f"chain {chain.name}: no result")
    return report


def render_text(report: ScanReport) -> str:
    """The human-readable listing: one line per chain, one line per opportunity."""
    lines: list[str] = []
    for scan in report.scans:
        lines.append(
            f"{scan.chain}: block {scan.block_number}, {scan.pools} pools, "
            f"{len(scan.opportunities)} opportunities"
        )
        for o in scan.opportunities:
            route = " -> ".join(f"{h.dex}:{h.pool[:10]}" for h in o.path)
            lines.append(
                f"  {o.id[:12]} {o.kind} token {o.token} in {o.amount_in} out {o.amount_out} "
                f"gross {o.gross_profit} net_wei {o.net_profit_wei} via {route}"
            )
    return "\n".join(lines)
