"""Cycle enumeration against a brute force over all pool sequences, and its incremental growth."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

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


def test_four_hop_small_graph_counts() -> None:
    weth, usdc, a, b, c = addr(1), addr(2), addr(3), addr(4), addr(5)
    pools = [
        v2(10, weth, a, 1, 1),
        v2(11, a, b, 1, 1),
        v2(12, b, c, 1, 1, "sushi"),
        v2(13, b, c, 1, 1, "uni"),
        v2(14, c, weth, 1, 1),
        v2(15, weth, usdc, 1, 1),
        v2(16, usdc, b, 1, 1),
    ]
    three = CycleIndex([weth], max_hops=3)
    three.add_pools(pools)
    assert len(three) == 0  # no two pools share both tokens with WETH, and no triangle closes
    four = CycleIndex([weth], max_hops=4)
    assert four.add_pools(pools) == len(four)
    # (10, 11, 12|13, 14) and (15, 16, 12|13, 14); (10, 11, 16, 15)
    assert len(four) == 2 + 2 + 1
    assert indexed(four) == brute_force(pools, [weth], 4)
    # The WETH-USDC-B-C 4-cycles again from USDC, plus USDC-B-A-WETH: another start, another cycle
    both = CycleIndex([weth, usdc], max_hops=4)
    both.add_pools(pools)
    assert len(both) == 5 + 2 + 1
    assert indexed(both) == brute_force(pools, [weth, usdc], 4)
    assert sorted(len(c.pools) for c in both.cycles) == [4] * 8
    for bad in (1, 5):
        with pytest.raises(ValueError, match="max_hops must be between 2 and 4"):
            CycleIndex([weth], max_hops=bad)


@pytest.mark.parametrize("seed", range(5))
def test_four_hop_random_graphs_match_brute_force(seed: int) -> None:
    """Dense small graphs (parallel pools, both bases on each other's cycles), built at once and
    in random batches of random order: the same cycles as brute force, none twice per base."""
    rng = random.Random(100 + seed)
    pools = random_pools(100 + seed, n_tokens=7, n_pools=18)
    degree = Counter(t for p in pools for t in (p.token0, p.token1))
    bases = [t for t, _ in degree.most_common(2)]
    expected = brute_force(pools, bases, 4)
    four_hop = [sorted(pools) for _, pools in expected if len(pools) == 4]
    assert len(four_hop) > len(set(map(tuple, four_hop))) > 10  # some from both bases
    whole = CycleIndex(bases, max_hops=4)
    whole.add_pools(pools)
    assert indexed(whole) == expected
    assert len(whole) == len(expected)  # no cycle emitted twice from the same base
    shuffled = pools[:]
    rng.shuffle(shuffled)
    grown = CycleIndex(bases, max_hops=4)
    at = 0
    added = 0
    while at < len(shuffled):
        size = rng.randrange(1, 6)
        added += grown.add_pools(shuffled[at : at + size])
        at += size
    assert added == len(grown) == len(expected)
    assert indexed(grown) == expected
    assert grown.leg_codes().shape == (len(grown), 4)
    for max_hops in (2, 3):
        shorter = CycleIndex(bases, max_hops=max_hops)
        shorter.add_pools(shuffled)
        assert indexed(shorter) == {k for k in expected if len(k[1]) <= max_hops}


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


@pytest.mark.parametrize("max_hops", [3, 4])
def test_cycles_touching_and_directions(max_hops: int) -> None:
    pools = random_pools(3, n_tokens=8, n_pools=20)
    base = pools[0].token0
    index = CycleIndex([base], max_hops=max_hops)
    index.add_pools(pools)
    target = pools[5].address
    assert any(len(c.pools) == max_hops for c in index.cycles)
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
    # a leg code row is the forward orientation, padded with -1
    codes = index.leg_codes()
    for cycle, row in zip(index.cycles, codes.tolist(), strict=True):
        legs = zip(cycle.pools, cycle.zero_for_one, strict=True)
        forward = [2 * p + (0 if z else 1) for p, z in legs]
        assert row == forward + [-1] * (max_hops - len(forward))
