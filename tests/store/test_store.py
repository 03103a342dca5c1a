"""One suite for SQLite and PostgreSQL: migrations, exact uint256, opportunities, trades, rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from mevstack.store import Conflict, NotFound, Store, StoreError, TokenInfo, Trade
from mevstack.store import tables as t
from mevstack.store.migrate import (
    VERSION_TABLE,
    create_store_engine,
    current_revision,
    head_revision,
    upgrade_to_head,
)

UINT256_MAX = 2**256 - 1
T0 = datetime(2026, 11, 25, 6, 0, 0, 123456, tzinfo=UTC)


def opportunity(n: int, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": f"opp-{n}",
        "chain": "ethereum",
        "chain_id": 1,
        "kind": "arbitrage",
        "block_number": 100 + n,
        "token": "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        "amount_in": "1000000000000000000",
        "amount_out": "1000000000000000123",
        "gross_profit": "123",
        "gas_estimate": 150000,
        "net_profit_wei": str(1000 + n),
        "path": [],
        "trigger_tx": None,
        "status": "detected",
        "detected_at": (T0 + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
        "expires_at_block": 102 + n,
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_build_the_schema_and_are_idempotent(
    kind: str, fresh_url: Callable[[str], str]
) -> None:
    url = fresh_url(kind)
    with Store.open(url) as store:
        assert store.revision() == head_revision()
        store.kv_set("mode", {"mode": "paper"})
        names = set(inspect(store.engine).get_table_names())
        assert {"opportunities", "trades", "tokens", "audit_log", "api_tokens", "kv_state"} <= names
        assert VERSION_TABLE in names
        # The tables the repository queries are exactly what the migrations built.
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            diff = compare_metadata(context, t.metadata)
        assert diff == []
        if kind == "sqlite":
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    with Store.open(url) as again:  # re-open: nothing to do, data kept
        assert again.revision() == head_revision()
        assert again.kv_get("mode") == {"mode": "paper"}


def test_uint256_round_trips_exactly_and_sorts_numerically(store: Store) -> None:
    store.upsert_opportunity(opportunity(1, net_profit_wei=str(UINT256_MAX)))
    got = store.get_opportunity("opp-1")
    assert got is not None and got["net_profit_wei"] == str(UINT256_MAX)
    with store.engine.connect() as conn:
        column = conn.execute(select(t.opportunities.c.net_profit_wei)).scalar_one()
    assert column == UINT256_MAX
    values = [UINT256_MAX, -UINT256_MAX, 0, 1, -1, 2**64, -(2**64) + 1, 10**30]
    for n, value in enumerate(values):
        store.insert_trade(
            Trade(
                id=f"t{n}",
                chain="ethereum",
                route="public",
                token="0x1",
                expected_profit=value,
                net_pnl_wei=value,
                amount_in=UINT256_MAX,
            )
        )
    for n, value in enumerate(values):
        trade = store.get_trade(f"t{n}")
        assert trade is not None
        assert (trade.expected_profit, trade.net_pnl_wei, trade.amount_in) == (
            value,
            value,
            UINT256_MAX,
        )
        assert trade.to_json()["net_pnl_wei"] == str(value)
    with store.engine.connect() as conn:
        ordered = (
            conn.execute(select(t.trades.c.net_pnl_wei).order_by(t.trades.c.net_pnl_wei))
            .scalars()
            .all()
        )
        above = (
            conn.execute(select(t.trades.c.id).where(t.trades.c.net_pnl_wei > 2**64))
            .scalars()
            .all()
        )
    assert ordered == sorted(values)
    assert sorted(above) == ["t0", "t7"]
    with pytest.raises(StoreError, match="does not fit"):
        store.upsert_opportunity(opportunity(2, net_profit_wei=str(10**78)))


def test_opportunity_upsert_list_filters_and_status(store: Store) -> None:
    store.upsert_opportunity(opportunity(1))
    store.upsert_opportunity(opportunity(2, chain="base", chain_id=8453, kind="backrun"))
    store.upsert_opportunity(opportunity(3))
    assert store.upsert_opportunity(opportunity(1, block_number=999, net_profit_wei="5"))
    assert not store.upsert_opportunity(opportunity(1, block_number=998))  # older: ignored
    assert [o["id"] for o in store.list_opportunities()] == ["opp-3", "opp-2", "opp-1"]
    assert store.get_opportunity("opp-1") == opportunity(1, block_number=999, net_profit_wei="5")
    assert [o["id"] for o in store.list_opportunities(chain="ethereum")] == ["opp-3", "opp-1"]
    assert [o["id"] for o in store.list_opportunities(kind="backrun")] == ["opp-2"]
    assert [o["id"] for o in store.list_opportunities(limit=1)] == ["opp-3"]
    updated = store.set_opportunity_status("opp-3", "submitted")
    assert updated["status"] == "submitted"
    assert [o["id"] for o in store.list_opportunities(status="submitted")] == ["opp-3"]
    assert store.get_opportunity("opp-3") == updated
    assert store.get_opportunity("nope") is None
    with pytest.raises(NotFound, match="no opportunity 'nope'"):
        store.set_opportunity_status("nope", "expired")
    with pytest.raises(StoreError, match="limit must be between"):
        store.list_opportunities(limit=0)


def test_a_batch_of_opportunities_is_validated_first_and_skips_older_sightings(
    store: Store,
) -> None:
    assert store.upsert_opportunity(opportunity(1, block_number=500))
    batch = [opportunity(1, block_number=499), opportunity(2), opportunity(3)]
    assert store.upsert_opportunities(batch) == 2  # the older sighting of opp-1 is ignored
    assert store.get_opportunity("opp-1") == opportunity(1, block_number=500)
    assert [o["id"] for o in store.list_opportunities()] == ["opp-3", "opp-2", "opp-1"]
    with pytest.raises(StoreError, match="is not one of"):
        store.upsert_opportunities([opportunity(4), opportunity(5, kind="sandwich")])
    assert store.get_opportunity("opp-4") is None  # nothing of a bad batch is written
    assert store.upsert_opportunities([]) == 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"kind": "sandwich"}, "opportunity kind: 'sandwich' is not one of"),
        ({"status": "won"}, "opportunity status"),
        ({"net_profit_wei": 12.5}, "net_profit_wei: expected a decimal string"),
        ({"net_profit_wei": "0x10"}, "net_profit_wei: expected a decimal string"),
        ({"detected_at": "yesterday"}, "detected_at: not an ISO-8601 time"),
        ({"detected_at": "2026-11-25T06:00:00"}, "time without a timezone"),
        ({"block_number": -1}, "block_number: expected a non-negative integer"),
        ({"id": ""}, "opportunity id: expected a non-empty string"),
    ],
)
def test_bad_opportunities_are_one_line_errors(
    store: Store, override: dict[str, Any], message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        store.upsert_opportunity(opportunity(1, **override))
    assert store.list_opportunities() == []


def test_retention_prune(store: Store) -> None:
    for n in range(6):
        store.upsert_opportunity(opportunity(n))
        store.upsert_opportunity(opportunity(n + 10, id=f"base-{n}", chain="base"))
    assert store.prune_opportunities(keep_per_chain=4) == 4
    assert [o["id"] for o in store.list_opportunities(chain="ethereum")] == [
        "opp-5",
        "opp-4",
        "opp-3",
        "opp-2",
    ]
    assert [o["id"] for o in store.list_opportunities(chain="base")] == [
        "base-5",
        "base-4",
        "base-3",
        "base-2",
    ]
    assert store.prune_opportunities(older_than=T0 + timedelta(seconds=4)) == 2
    assert [o["id"] for o in store.list_opportunities(chain="ethereum")] == ["opp-5", "opp-4"]
    assert store.prune_opportunities(keep_per_chain=100) == 0
    with pytest.raises(StoreError, match="give keep_per_chain, older_than or both"):
        store.prune_opportunities()


def test_trade_lifecycle(store: Store) -> None:
    assert store.max_fencing_epoch() == 0
    trade = store.insert_trade(
        Trade(
            id="tr-1",
            opportunity_id="opp-1",
            chain="arbitrum",
            route="private",
            token="0xtoken",
            expected_profit=10**20,
            fencing_epoch=7,
        )
    )
    assert trade.created_at is not None and trade.status == "pending"
    assert store.max_fencing_epoch() == 7
    with pytest.raises(Conflict, match="trade 'tr-1' already exists"):
        store.insert_trade(Trade(id="tr-1", chain="arbitrum", route="public", token="0x"))
    done = store.update_trade(
        "tr-1",
        status="included",
        tx_hashes=["0xabc"],
        gas_used=123456,
        realized_profit=10**20 - 1,
        net_pnl_wei=-5,
        block_number=77,
    )
    assert store.get_trade("tr-1") == done
    assert done.updated_at is not None and done.updated_at >= trade.created_at
    assert done.created_at == trade.created_at
    assert done.to_json() == {
        "id": "tr-1",
        "opportunity_id": "opp-1",
        "chain": "arbitrum",
        "route": "private",
        "token": "0xtoken",
        "tx_hashes": ["0xabc"],
        "status": "included",
        "amount_in": None,
        "expected_profit": str(10**20),
        "realized_profit": str(10**20 - 1),
        "gas_used": 123456,
        "gas_cost_wei": None,
        "net_pnl_wei": "-5",
        "block_number": 77,
        "confirmations": 0,
        "error": None,
        "fencing_epoch": 7,
        "created_at": done.to_json()["created_at"],
        "updated_at": done.to_json()["updated_at"],
        "token_symbol": None,
        "token_decimals": None,
    }
    assert done.to_json()["created_at"].endswith("Z")
    with pytest.raises(NotFound):
        store.update_trade("missing", status="failed")
    with pytest.raises(StoreError, match="unknown field\\(s\\) colour"):
        store.update_trade("tr-1", colour="red")
    with pytest.raises(StoreError, match="trade status 'lost'"):
        store.update_trade("tr-1", status="lost")
    assert store.get_trade("tr-1") == done  # the failed updates changed nothing


def test_one_active_trade_per_opportunity(store: Store) -> None:
    def trade(trade_id: str, **over: Any) -> Trade:
        return Trade(
            id=trade_id, opportunity_id="opp-1", chain="base", route="public", token="0x", **over
        )

    store.insert_trade(trade("a"))
    with pytest.raises(Conflict, match="opportunity 'opp-1' already has an active trade"):
        store.insert_trade(trade("b", status="submitted"))
    store.insert_trade(trade("old", status="failed"))  # finished trades do not count
    store.update_trade("a", status="included")
    store.insert_trade(trade("b"))  # now it may be retried
    with pytest.raises(Conflict, match="already has an active trade"):
        store.update_trade("a", status="submitted")  # e.g. a reorg, while b is active
    got = store.get_trade("a")
    assert got is not None and got.status == "included"
    for n in range(3):  # trades without an opportunity are not limited
        store.insert_trade(Trade(id=f"manual-{n}", chain="base", route="public", token="0x"))
    with pytest.raises(Conflict, match="trade 'b' already exists"):
        store.insert_trade(trade("b", status="failed"))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_from_an_older_revision_keeps_data(
    kind: str, fresh_url: Callable[[str], str]
) -> None:
    url = fresh_url(kind)
    engine = create_store_engine(url)
    try:
        upgrade_to_head(engine, "0001")
        assert current_revision(engine) == "0001"
        with engine.begin() as conn:
            conn.execute(
                t.trades.insert().values(
                    id="legacy",
                    opportunity_id="opp-9",
                    chain="ethereum",
                    route="public",
                    token="0x",
                    status="submitted",
                    confirmations=0,
                    tx_hashes=[],
                    fencing_epoch=3,
                    created_at=T0,
                    updated_at=T0,
                    amount_in=UINT256_MAX,
                )
            )
    finally:
        engine.dispose()
    with Store.open(url) as store:
        assert store.revision() == head_revision() != "0001"
        legacy = store.get_trade("legacy")
        assert legacy is not None and legacy.amount_in == UINT256_MAX
        with pytest.raises(Conflict, match="active trade"):
            store.insert_trade(
                Trade(
                    id="new", opportunity_id="opp-9", chain="ethereum", route="public", token="0x"
                )
            )


def test_trade_cursor_pagination_is_stable_with_ties(store: Store) -> None:
    ids = []
    for n in range(23):
        # Groups of three share one created_at: the id breaks the tie.
        created = T0 + timedelta(microseconds=n // 3)
        chain = "ethereum" if n % 2 else "polygon"
        store.insert_trade(
            Trade(
                id=f"tr-{n:02d}",
                chain=chain,
                route="public",
                token="0x",
                created_at=created,
                status="submitted" if n % 5 else "failed",
            )
        )
        ids.append((created, f"tr-{n:02d}"))
    expected = [i for _, i in sorted(ids, reverse=True)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_trades(cursor=cursor, limit=5)
        seen += [tr.id for tr in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected and pages == 5
    # A trade inserted meanwhile at the top does not shift later pages.
    first = store.list_trades(limit=10)
    store.insert_trade(Trade(id="tr-new", chain="ethereum", route="public", token="0x"))
    second = store.list_trades(limit=10, cursor=first.next_cursor)
    assert [x.id for x in second.items] == expected[10:20]
    eth = store.list_trades(chain="ethereum", status="submitted", limit=100)
    assert {x.id for x in eth.items} == {f"tr-{n:02d}" for n in range(23) if n % 2 and n % 5}
    assert eth.next_cursor is None
    with pytest.raises(StoreError, match="bad cursor"):
        store.list_trades(cursor="not-a-cursor!")


def test_tokens_audit_api_tokens_kv(store: Store) -> None:
    usdc = TokenInfo(
        chain_id=1, address="0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", symbol="USDC", decimals=6
    )
    assert store.get_token(1, usdc.address) is None
    store.put_token(usdc)
    got = store.get_token(1, usdc.address)
    assert got is not None and (got.symbol, got.decimals, got.safe) == ("USDC", 6, None)
    store.put_token(
        TokenInfo(chain_id=1, address=usdc.address, symbol="USDC", decimals=6, safe=False)
    )
    again = store.get_token(1, usdc.address)
    assert again is not None and again.safe is False
    assert store.get_token(10, usdc.address) is None

    for n in range(3):
        store.audit("ops", f"action-{n}", {"n": n, "wei": str(UINT256_MAX)})
    store.audit("admin", "kill-switch", {})
    entries = store.list_audit()
    assert [e.action for e in entries] == ["kill-switch", "action-2", "action-1", "action-0"]
    assert entries[1].details == {"n": 2, "wei": str(UINT256_MAX)}
    assert [e.action for e in store.list_audit(actor="ops", limit=2)] == ["action-2", "action-1"]

    digest = "ab" * 32
    store.add_api_token("ops", digest, ["trade", "read", "read"])
    tokens = store.list_api_tokens()
    assert [(x.name, x.scopes) for x in tokens] == [("ops", ("read", "trade"))]
    found = store.get_api_token_by_hash(digest)
    assert found is not None and found.name == "ops"
    assert store.get_api_token_by_hash("cd" * 32) is None
    with pytest.raises(Conflict):
        store.add_api_token("other", digest, ["read"])
    with pytest.raises(StoreError, match="64 lowercase hex"):
        store.add_api_token("x", "not-a-digest", ["read"])
    with pytest.raises(StoreError, match="scopes"):
        store.add_api_token("x", "ef" * 32, ["root"])

    assert store.kv_get("trading", {"default": True}) == {"default": True}
    store.kv_set("trading", {"kill_switch": False, "limits": {"ethereum": "10"}})
    store.kv_set("trading", {"kill_switch": True})
    assert store.kv_get("trading") == {"kill_switch": True}


async def test_async_callers_write_concurrently_through_threads(store: Store) -> None:
    await asyncio.gather(
        *(asyncio.to_thread(store.audit, "engine", f"a{n}", {"n": n}) for n in range(16))
    )
    entries = await asyncio.to_thread(store.list_audit, limit=100)
    assert sorted(e.details["n"] for e in entries) == list(range(16))


async def test_concurrent_read_modify_write_updates_all_land(store: Store) -> None:
    store.insert_trade(Trade(id="hot", chain="base", route="public", token="0x"))

    def bump(n: int) -> None:
        for _ in range(5):
            current = store.get_trade("hot")
            assert current is not None
            store.update_trade("hot", tx_hashes=(*current.tx_hashes, f"0x{n}"))

    await asyncio.gather(*(asyncio.to_thread(bump, n) for n in range(4)))
    final = store.get_trade("hot")
    assert final is not None and 1 <= len(final.tx_hashes) <= 20  # writers never fail


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_two_processes_opening_one_new_database_at_once(
    kind: str, fresh_url: Callable[[str], str]
) -> None:
    url = fresh_url(kind)
    stores = await asyncio.gather(*(asyncio.to_thread(Store.open, url) for _ in range(3)))
    try:
        assert {s.revision() for s in stores} == {head_revision()}
    finally:
        for s in stores:
            s.close()


def test_bad_urls_and_unreachable_database(tmp_path: Any) -> None:
    with pytest.raises(StoreError, match="unsupported database URL 'mysql://\\*\\*\\*@h/db'"):
        Store.open("mysql://u:p@h/db")
    with pytest.raises(StoreError, match="bad database URL"):
        Store.open("not a url")
    from mevstack.devnet.anvil import free_port

    with pytest.raises(StoreError, match="unavailable"):
        Store.open(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
