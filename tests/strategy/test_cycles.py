"""Cycle enumeration against a brute force over all pool sequences, and its incremental growth."""

from __future__ import annotations

import itertools
import random

from mevstack.market.pools.uniswap_v2 import V2PoolState
from mevstack.strategy.cycles import CycleIndex
from tests.strategy.pools import addr, v2

Key = tuple[str, tuple[str, ...]]


def brute_force(pools: list[V2PoolState], bases: list[str], max_hops: int) -> set[Key]:
    """Every sequence of distinct pools from a base back to it through distinct tokens,
    one entry per cycle (a sequence and its reverse are the same cycle)."""
    found: set[Key] = set()
    for base in bases:
        for k in range(2, max_hops + 1):
            for seq in itertools.permutations(pools, k):
                token = base
                seen = [base]
                ok = True
                for pool in seq:
                    if token not in (pool.token0, pool.token1):
                        ok = False
                        break
                    token = pool.token1 if token == pool.token0 else pool.token0
                    seen.append(token)
                if not ok or token != base or len(set(seen[:-1])) != k:
                    continue
                addresses = tuple(p.address for p in seq)
                found.add((base, min(addresses, addresses[::-1])))
    return found


def indexed(index: CycleIndex) -> set[Key]:
    out: set[Key] = set()
    for cycle in index.cycles:
        addresses = tuple(index.pools[p].address for p in cycle.pools)
        out.add((cycle.start, min(addresses, addresses[::-1])))
    return out


def random_pools(seed: int, n_tokens: int, n_pools: int) -> list[V2PoolState]:
    rng = random.Random(seed)
    tokens = [addr(0x1000 + i) for i in range(n_tokens)]
    pools = []
    for i in range(n_pools):
        a, b = rng.sample(tokens, 2)
        pools.append(v2(0x9000 + i, a, b, 10**18, 10**18, dex=rng.choice(["uni", "sushi"])))
    return pools


def test_small_graph_counts() -> None:
    weth, usdc, x, y = addr(1), addr(2), addr(3), addr(4)
    pools = [
        v2(10, weth, x, 1, 1, "uni"),
        v2(11, weth, x, 1, 1, "sushi"),
        v2(12, x, y, 1, 1),
        v2(13, y, weth, 1, 1),
        v2(14, weth, usdc, 1, 1),
        v2(15, usdc, x, 1, 1),
    ]
    index = CycleIndex([weth], max_hops=3)
    assert index.add_pools(pools) == len(index)
    # 2-hop: {10,11}.  3-hop: (10|11, 12, 13), (14, 15, 10|11)
    assert len(index) == 1 + 2 + 2
    assert indexed(index) == brute_force(pools, [weth], 3)
    two_hop = CycleIndex([weth], max_hops=2)
    two_hop.add_pools(pools)
    assert len(two_hop) == 1
    both = CycleIndex([weth, usdc], max_hops=3)
    both.add_pools(pools)
    # from USDC: (14, 10|11, 15) — the WETH-USDC-X triangles counted once more from USDC
    assert len(both) == 5 + 2
    assert indexed(both) == brute_force(pools, [weth, usdc], 3)


def test_random_graphs_match_brute_force() -> None:
    for seed in range(4):
        pools = random_pools(seed, n_tokens=9, n_pools=22)
        bases = [pools[0].token0, pools[3].token1]
        index = CycleIndex(bases, max_hops=3)
        index.add_pools(pools)
        assert indexed(index) == brute_force(pools, bases, 3)
        assert len(indexed(index)) == len(index)  # no duplicates


def test_incremental_equals_from_scratch() -> None:
    pools = random_pools(7, n_tokens=10, n_pools=30)
    bases = [pools[0].token0]
    whole = CycleIndex(bases)
    whole.add_pools(pools)
    grown = CycleIndex(bases)
    added = [grown.add_pools(pools[i : i + 7]) for i in range(0, 30, 7)]
    assert sum(added) == len(grown) == len(whole)
    assert indexed(grown) == indexed(whole)
    assert grown.add_pools(pools) == 0  # already known pools add nothing
    assert grown.leg_codes().shape == (len(grown), 3)


def test_cycles_touching_and_directions() -> None:
    pools = random_pools(3, n_tokens=8, n_pools=20)
    base = pools[0].token0
    index = CycleIndex([base])
    index.add_pools(pools)
    target = pools[5].address
    touching = index.cycles_touching([target, addr(0xDEAD)])
    expected = [i for i, c in enumerate(index.cycles) if index.pool_ids[target.lower()] in c.pools]
    assert touching == expected
    for cycle in index.cycles:
        for orientation in (cycle, cycle.reversed()):
            token = orientation.start
            for p, zero_for_one in zip(orientation.pools, orientation.zero_for_one, strict=True):
                key = index.pools[p]
                assert token == (key.token0 if zero_for_one else key.token1)
                token = key.token1 if zero_for_one else key.token0
            assert token == orientation.start
