"""The opportunity lifecycle of one chain (pure): new, changed, unchanged, expired."""

from __future__ import annotations

from dataclasses import replace

from mevstack.engine.chain_runtime import ChangeFeed, OpportunityBook
from mevstack.strategy.opportunity import Hop, Opportunity, episode_id

A, B, C = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40
WETH, USDC = "0x" + "1" * 40, "0x" + "2" * 40


def opp(ident: str, pools: tuple[str, str], block: int, out: int) -> Opportunity:
    hops = (
        Hop("uniswap-v2", pools[0], WETH, USDC, 100, 5000, "uniswap_v2"),
        Hop("sushi-v2", pools[1], USDC, WETH, 5000, out, "uniswap_v2"),
    )
    return Opportunity(
        id=ident, chain="ethereum", chain_id=1, kind="arbitrage", block_number=block,
        token=WETH, amount_in=100, amount_out=out, gross_profit=out - 100, gas_estimate=1,
        gas_price_wei=1, gas_cost_wei=1, net_profit_wei=out - 101, path=hops, trigger_tx=None,
        status="detected", detected_at=f"t{block}", expires_at_block=block + 2,
    )  # fmt: skip


def test_book_publishes_new_and_changed_keeps_identity_and_expires_only_what_it_rescanned() -> None:
    book = OpportunityBook()
    x, y = episode_id("x", 10), episode_id("y", 10)
    first = [opp("x", (A, B), 10, 120), opp("y", (B, C), 10, 130)]
    assert [o.id for o in book.update(first, None)] == [x, y]

    # block 11 touched A only: x is re-found unchanged (nothing to publish), y is out of scope
    assert book.update([opp("x", (A, B), 11, 120)], {A.lower()}) == []
    # block 12 touched A: x changed amounts: published again, keeping its id and first detected_at
    changed = book.update([opp("x", (A, B), 12, 125)], {A.lower()})
    assert [(o.id, o.amount_out, o.detected_at, o.status) for o in changed] == [
        (x, 125, "t10", "detected")
    ]
    # block 13 touched C: y was re-evaluated and not found: expired; x untouched stays alive
    expired = book.update([], {C.lower()})
    assert [(o.id, o.status) for o in expired] == [(y, "expired")]
    assert set(book.active) == {x}
    # a full rescan that finds nothing expires everything
    assert [(o.id, o.status) for o in book.update([], None)] == [(x, "expired")]
    assert book.active == {}
    assert replace(first[0], status="expired") == first[0].with_status("expired")


def test_a_path_that_reopens_or_outlives_its_execution_is_a_new_opportunity() -> None:
    book = OpportunityBook()
    (first,) = book.update([opp("x", (A, B), 10, 120)], None)
    assert first.id == episode_id("x", 10)
    book.update([], None)  # expired
    (again,) = book.update([opp("x", (A, B), 20, 120)], None)
    assert again.id == episode_id("x", 20) != first.id

    # executed at block 20 while the gap stays open: its next sighting is a new episode ...
    renewed = book.renew(again)
    assert renewed.id == episode_id(again.id, 20) != again.id
    assert set(book.active) == {renewed.id} and book.knows(renewed.id)
    assert not book.knows(again.id)
    # ... which later scans keep refreshing under its own id
    (later,) = book.update([opp("x", (A, B), 21, 125)], {A.lower()})
    assert later.id == renewed.id
    assert not book.knows("a backrun's id the book never issued")


def test_change_feed_accumulates_until_taken_and_invalidation_means_a_full_rescan() -> None:
    feed = ChangeFeed()
    assert feed.take() is None  # a fresh consumer starts with a full scan
    feed.add({"a"})
    feed.add({"b"})
    assert feed.take() == {"a", "b"}  # coalesced ticks lose nothing
    assert feed.take() == set()
    feed.add({"c"})
    feed.invalidate()
    assert feed.take() is None
