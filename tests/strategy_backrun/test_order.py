"""The block order of pending transactions (``block_order``, ``ahead_of``) and a backrun priced
behind the pending swaps ordered ahead of its trigger, on hand-built pool states."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from mevstack.strategy.backrun import (
    BackrunSearch,
    ahead_of,
    apply_trigger,
    between_of,
    block_order,
    order_price,
    price_floor,
    reaching,
)
from mevstack.strategy.mempool import PendingSwap
from tests.strategy.pools import addr
from tests.strategy_backrun.abi import ROUTER02, calldata
from tests.strategy_backrun.test_backrun import (
    DETECTED,
    E6,
    E18,
    GAS,
    ME,
    NOW,
    SUSHI_ROUTER,
    TERMS,
    UNI_ROUTER,
    USDC,
    VENUES,
    WETH,
    directory,
    eth_for_usdc,
    hop_amounts_on,
    market,
    pending,
)

GWEI = 10**9
ALICE, BOB, CAROL = addr(0xA11CE), addr(0xB0B), addr(0xCA401)


def tx(name: int, sender: str, nonce: int, max_fee: int, tip: int) -> PendingSwap:
    return PendingSwap("0x" + f"{name:064x}", sender, nonce, addr(0x1001), 0, (), max_fee, tip)


def names(txs: list[PendingSwap]) -> list[int]:
    return [int(t.tx_hash, 16) for t in txs]


def test_effective_tip_at_the_base_fee_orders_the_block() -> None:
    # effective tips at base fee 10 gwei: 1 -> 3, 2 -> 5 (capped by max fee), 3 -> 4
    txs = [
        tx(1, ALICE, 0, 100 * GWEI, 3 * GWEI),
        tx(2, BOB, 0, 15 * GWEI, 9 * GWEI),
        tx(3, CAROL, 0, 14 * GWEI, 4 * GWEI),
    ]
    assert names(block_order(txs, base_fee=10 * GWEI)) == [2, 3, 1]
    # a higher base fee changes the ranking: 1 -> 3, 2 -> 1, 3 -> 0
    assert names(block_order(txs, base_fee=14 * GWEI)) == [1, 2, 3]
    # a fee cap below the base fee cannot be included at all
    assert names(block_order(txs, base_fee=20 * GWEI)) == [1]
    assert order_price(txs[1], base_fee=20 * GWEI, rule="effective_tip") is None
    # anvil ranks by fee cap instead
    assert names(block_order(txs, base_fee=10 * GWEI, rule="fee_cap")) == [1, 2, 3]


def test_ties_go_to_the_earlier_seen() -> None:
    same = [tx(n, sender, 0, 50 * GWEI, 2 * GWEI) for n, sender in ((7, BOB), (5, ALICE))]
    assert names(block_order(same, base_fee=GWEI)) == [7, 5]  # arrival, not hash or sender
    assert names(block_order(same[::-1], base_fee=GWEI)) == [5, 7]
    both = [*same, tx(9, CAROL, 0, 50 * GWEI, 2 * GWEI)]
    assert names(ahead_of(both[1], both, base_fee=GWEI)) == [7]
    assert names(ahead_of(both[2], both, base_fee=GWEI)) == [7, 5]
    # a trigger not among those seen counts as seen last
    late = tx(11, CAROL, 1, 50 * GWEI, 2 * GWEI)
    assert names(ahead_of(late, same, base_fee=GWEI)) == [7, 5]
    # one that is better paid goes first even if seen last
    rich = tx(12, CAROL, 0, 50 * GWEI, 3 * GWEI)
    assert names(ahead_of(rich, same, base_fee=GWEI)) == []


def test_a_sender_goes_in_nonce_order_whatever_its_prices() -> None:
    # Alice's nonce 1 pays most, but waits for her nonce 0, which pays least: Bob goes first
    txs = [
        tx(1, ALICE, 1, 100 * GWEI, 9 * GWEI),
        tx(2, BOB, 0, 100 * GWEI, 5 * GWEI),
        tx(3, ALICE, 0, 100 * GWEI, 1 * GWEI),
    ]
    assert names(block_order(txs, base_fee=GWEI)) == [2, 3, 1]
    # so a swap with a lower tip than the trigger can still be ahead of it
    assert names(ahead_of(txs[0], txs, base_fee=GWEI)) == [2, 3]
    # and a sender's transaction that cannot be included holds its later ones back
    stuck = [tx(3, ALICE, 0, 2 * GWEI, GWEI), tx(1, ALICE, 1, 100 * GWEI, 9 * GWEI)]
    assert block_order(stuck, base_fee=5 * GWEI) == []
    assert ahead_of(stuck[1], stuck, base_fee=5 * GWEI) == []


def test_a_backrun_lands_behind_every_pending_tx_ranked_level_with_it_or_above() -> None:
    # fee-cap ranking: Bob's and Carol's come after the trigger (Alice's: same cap, seen later),
    # Dave's pays less than any backrun would
    dave = addr(0xDA7E)
    ordered = block_order(
        [
            tx(1, ALICE, 0, 50 * GWEI, GWEI),
            tx(2, BOB, 0, 50 * GWEI, GWEI),
            tx(3, CAROL, 0, 40 * GWEI, GWEI),
            tx(4, dave, 0, 10 * GWEI, GWEI),
        ],
        base_fee=GWEI,
        rule="fee_cap",
    )
    assert names(ordered) == [1, 2, 3, 4]
    floor = price_floor(ordered, base_fee=GWEI, rule="fee_cap")
    assert floor == [50 * GWEI, 50 * GWEI, 40 * GWEI, 10 * GWEI]
    # a backrun at its trigger's fee cap is seen after Bob's, which ties with it
    assert names(between_of(ordered, floor, 0, 50 * GWEI)) == [2]
    # one that pays less than its trigger lands behind more of them
    assert names(between_of(ordered, floor, 0, 40 * GWEI)) == [2, 3]
    assert names(between_of(ordered, floor, 0, 5 * GWEI)) == [2, 3, 4]
    # behind the last one: nothing between; none that can pay the base fee: not behind it at all
    assert between_of(ordered, floor, 3, 10 * GWEI) == []
    assert between_of(ordered, floor, 0, None) == []
    # a trigger held back by its sender's cheaper nonce: such a backrun would go first
    held = block_order(
        [tx(5, ALICE, 1, 50 * GWEI, GWEI), tx(6, ALICE, 0, 20 * GWEI, GWEI)],
        base_fee=GWEI,
        rule="fee_cap",
    )
    assert names(held) == [6, 5]
    assert between_of(held, price_floor(held, base_fee=GWEI, rule="fee_cap"), 1, 50 * GWEI) == []


def test_reaching_follows_shared_pools_back() -> None:
    ahead = [tx(n, ALICE, n, GWEI, GWEI) for n in range(4)]
    named = [frozenset({"c"}), frozenset({"b", "c"}), frozenset({"x"}), frozenset({"a", "b"})]
    assert reaching(ahead, named, ["a"]) == [0, 1, 3]  # 3 names a; 1 shares b; 0 shares c
    assert reaching(ahead, named, ["x"]) == [2]
    assert reaching(ahead, named, ["z"]) == []


def swap(sender: str, nonce: int, tag: int, amount: Any, router: str = UNI_ROUTER) -> PendingSwap:
    base = eth_for_usdc(amount, router=router)
    return replace(
        base,
        tx_hash="0x" + f"{tag:064x}",
        sender=sender,
        nonce=nonce,
        max_fee_per_gas=50 * GWEI,
        max_priority_fee_per_gas=2 * GWEI,
    )


def test_the_backrun_is_priced_behind_the_swaps_ahead_of_its_trigger() -> None:
    states = market()
    search = BackrunSearch(TERMS, VENUES)
    search.add_pools(states.values())
    kw: dict[str, Any] = {"block_number": 7, "timestamp": NOW, "gas": GAS, "detected_at": DETECTED}
    first = swap(BOB, 0, 21, 30 * E18)  # same pool, same fees, seen before the trigger
    elsewhere = swap(CAROL, 0, 22, 20 * E18, router=SUSHI_ROUTER)  # the other pool of the cycle
    trigger = swap(ALICE, 0, 23, 80 * E18)
    seen = [first, elsewhere, trigger]
    ahead = ahead_of(trigger, seen, base_fee=GWEI)
    assert ahead == [first, elsewhere]
    result = search.search(trigger, states, ahead=ahead, **kw)
    assert result.effect is not None and result.opportunities
    best = result.opportunities[0]
    assert best.ahead_txs == (first.tx_hash, elsewhere.tx_hash)
    # the amounts are those of the state after both ahead swaps, then the trigger
    d = directory(states)
    post: dict[str, Any] = dict(states)
    for moving in (first, elsewhere, trigger):
        post.update(apply_trigger(moving, post, d, VENUES, timestamp=NOW).states)
    assert [h.amount_out for h in best.path] == hop_amounts_on(post, best)
    assert result.effect.states == apply_trigger(
        trigger, {**states, **apply_trigger(first, states, d, VENUES, timestamp=NOW).states},
        d, VENUES, timestamp=NOW,
    ).states  # fmt: skip
    alone = search.search(trigger, states, **kw).opportunities[0]
    assert alone.ahead_txs == () and alone.amount_in != best.amount_in
    # an ahead swap that would revert moves no pool: skipped, and not named
    failing = replace(
        eth_for_usdc(30 * E18, min_out=10**30), tx_hash="0x" + f"{24:064x}", sender=CAROL
    )
    with_revert = search.search(trigger, states, ahead=[failing, first], **kw).opportunities[0]
    only_first = search.search(trigger, states, ahead=[first], **kw).opportunities[0]
    assert with_revert.ahead_txs == (first.tx_hash,)
    assert (with_revert.amount_in, with_revert.amount_out) == (
        only_first.amount_in,
        only_first.amount_out,
    )


def test_the_backrun_is_priced_behind_the_swaps_between_its_trigger_and_it() -> None:
    states = market()
    search = BackrunSearch(TERMS, VENUES)
    search.add_pools(states.values())
    kw: dict[str, Any] = {"block_number": 7, "timestamp": NOW, "gas": GAS, "detected_at": DETECTED}
    trigger = swap(ALICE, 0, 41, 80 * E18)
    later = swap(BOB, 0, 42, 20 * E18, router=SUSHI_ROUTER)  # the other pool of the cycle
    result = search.search(trigger, states, between=[later], **kw)
    assert result.effect is not None and result.opportunities
    best = result.opportunities[0]
    assert best.ahead_txs == () and best.between_txs == (later.tx_hash,)
    assert best.to_json()["between_txs"] == [later.tx_hash]
    # the amounts are those of the state after the trigger, then the later swap
    d = directory(states)
    post: dict[str, Any] = dict(states)
    for moving in (trigger, later):
        post.update(apply_trigger(moving, post, d, VENUES, timestamp=NOW).states)
    assert [h.amount_out for h in best.path] == hop_amounts_on(post, best)
    # the trigger's effect is its own (on the head state); without the later swap the amounts
    # differ
    assert result.effect.states == apply_trigger(trigger, states, d, VENUES, timestamp=NOW).states
    plain = search.search(trigger, states, **kw).opportunities[0]
    assert plain.between_txs == () and plain.amount_out != best.amount_out
    # a later swap on unrelated pools is not applied
    stranger = pending(addr(0x9999), calldata(ROUTER02, "swapExactTokensForTokens",
                       1000 * E6, 0, [USDC, WETH], ME, NOW), tag=43)  # fmt: skip
    got = search.search(trigger, states, between=[stranger], **kw).opportunities[0]
    assert got.between_txs == () and (got.amount_in, got.amount_out) == (
        plain.amount_in,
        plain.amount_out,
    )


def test_an_ahead_swap_on_unrelated_pools_is_not_applied() -> None:
    states = market()
    search = BackrunSearch(TERMS, VENUES)
    search.add_pools(states.values())
    kw: dict[str, Any] = {"block_number": 7, "timestamp": NOW, "gas": GAS, "detected_at": DETECTED}
    # DAI -> USDC on a router of no configured DEX: names no pool we index
    stranger = pending(addr(0x9999), calldata(ROUTER02, "swapExactTokensForTokens",
                       1000 * E6, 0, [USDC, WETH], ME, NOW), tag=31)  # fmt: skip
    trigger = swap(ALICE, 0, 32, 80 * E18)
    got = search.search(trigger, states, ahead=[stranger], **kw).opportunities[0]
    plain = search.search(trigger, states, **kw).opportunities[0]
    assert got.ahead_txs == () and (got.amount_in, got.amount_out) == (
        plain.amount_in,
        plain.amount_out,
    )


class AnyCase(Mapping[str, Any]):
    """A read-only view of pool states that answers in any address case (as the engine's is)."""

    def __init__(self, states: dict[str, Any]) -> None:
        self._by_lower = {k.lower(): v for k, v in states.items()}
        self._keys = list(states)

    def __getitem__(self, key: str) -> Any:
        return self._by_lower[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def test_pools_indexed_in_another_case_than_the_states_are_still_screened() -> None:
    # addresses whose checksummed form has capitals, indexed in lower case
    moved = [replace(p, address=addr(0xFACADE00 + i)) for i, p in enumerate(market().values())]
    states = {p.address: p for p in moved}
    assert all(a != a.lower() for a in states)
    lower = [replace(p, address=p.address.lower()) for p in moved]
    search = BackrunSearch(TERMS, VENUES)
    search.add_pools(lower)
    kw: dict[str, Any] = {"block_number": 7, "timestamp": NOW, "gas": GAS, "detected_at": DETECTED}
    first = swap(BOB, 0, 41, 30 * E18)
    trigger = swap(ALICE, 0, 42, 80 * E18)
    view = AnyCase(states)
    behind = search.search(trigger, view, ahead=[first], **kw).opportunities
    search.on_block(None)  # a new head: every rate is taken again from the view
    again = search.search(trigger, view, ahead=[first], **kw).opportunities
    plain = BackrunSearch(TERMS, VENUES)
    plain.add_pools(states.values())
    expected = plain.search(trigger, states, ahead=[first], **kw).opportunities
    assert expected and behind and again
    for found in (behind, again):
        assert [(o.amount_in, o.amount_out, o.ahead_txs) for o in found] == [
            (o.amount_in, o.amount_out, o.ahead_txs) for o in expected
        ]
