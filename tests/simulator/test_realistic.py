"""Realistic mode: each hostile behaviour Kalshi has (PROTOCOL.md section 10), one test each."""

import asyncio
import dataclasses

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulator import EngineConfig, Simulator, SimulatorConfig, realistic
from simulator.management.commands.kalshi_sim import Command, build_config
from simulator.ratelimit import TokenBucket
from simulator.server import new_session

from .conftest import RECV_TIMEOUT, Client, rest_get, ws_connect

def active(sim, n=None):
    tickers = [t for t, m in sim.markets().items() if m.status == "active" and not m.is_combo]
    return tickers[:n] if n else tickers


@pytest.mark.asyncio
async def subscribe_book(client, tickers) -> int:
    await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": tickers})
    reply = await client.recv()
    assert reply["type"] == "subscribed", reply
    await client.recv_n(len(tickers))  # the snapshots
    return reply["msg"]["sid"]


@pytest.mark.asyncio
async def test_cap_refuses_a_subscribe_or_add_markets_beyond_it_with_26_and_changes_nothing(make_sim):
    sim = await make_sim(seed=3, markets=8, market_cap_per_subscription=3)
    tickers = active(sim, 4)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": tickers})
        refused = await client.recv()
        assert refused["type"] == "error" and refused["msg"]["code"] == 26
        assert await client.until_barrier() == []  # nothing subscribed, no snapshot
        sid = await subscribe_book(client, tickers[:3])
        await client.send("update_subscription", {"sid": sid, "action": "add_markets", "market_tickers": tickers[3:]})
        refused = await client.recv()
        assert refused["type"] == "error" and refused["msg"]["code"] == 26 and refused["sid"] == sid
        assert sim.connections[0].session.subscriptions[sid].tickers == set(tickers[:3])
        # A second subscription on another connection is a fresh budget.
        async with ws_connect(sim) as other:
            await subscribe_book(Client(other), tickers[3:])


@pytest.mark.asyncio
async def test_commands_beyond_the_pacing_bucket_get_27_and_are_not_carried_out(make_sim):
    sim = await make_sim(seed=3, markets=4, command_rate_per_s=0.001, command_burst=2)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        for _ in range(2):
            await client.send("list_subscriptions")
            assert (await client.recv())["type"] == "ok"
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": active(sim, 1)})
        paced = await client.recv()
        assert paced["type"] == "error" and paced["msg"]["code"] == 27
    assert sim.connections == [] or not sim.connections[0].session.subscriptions


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "mode, ok_seq, snapshot_seq",
    [("consume", 2, 3), ("peek", 2, 2), ("none", None, 2)],
)
async def test_reply_seq_is_consumed_peeked_or_absent(make_sim, mode, ok_seq, snapshot_seq):
    sim = await make_sim(seed=5, markets=6, reply_seq=mode)
    first, second = active(sim, 2)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        sid = await subscribe_book(client, [first])  # its snapshot is seq 1
        await client.send("update_subscription", {"sid": sid, "action": "add_markets", "market_tickers": [second]})
        ok, snapshot = await client.recv_n(2)
        assert ok["type"] == "ok" and ok.get("seq") == ok_seq
        assert snapshot["type"] == "orderbook_snapshot" and snapshot["seq"] == snapshot_seq


def test_mixed_reply_seq_draws_both_conventions_across_connections():
    sim = Simulator(seed=1, markets=2, rate=0, reply_seq="mixed")
    drawn = [new_session(sim, n).reply_seq for n in range(1, 21)]
    assert set(drawn) == {"consume", "peek"}
    assert drawn == [new_session(sim, n).reply_seq for n in range(1, 21)]  # from the seed


@pytest.mark.asyncio
async def test_lifecycle_frames_carry_no_seq_when_asked(make_sim):
    engine = EngineConfig(markets=6, lifecycle_probability=0.5)
    sim = await make_sim(config=SimulatorConfig(engine=engine), seed=2, lifecycle_seq=False)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["market_lifecycle_v2"]})
        assert (await client.recv())["type"] == "subscribed"
        sim.step(100)
        frames = await client.until_barrier()
    assert {f["type"] for f in frames} & {"market_lifecycle_v2", "event_lifecycle"}
    assert all("seq" not in f for f in frames)


@pytest.mark.asyncio
async def test_add_markets_refused_with_18_subscribes_nothing(make_sim):
    sim = await make_sim(seed=4, markets=6, add_markets_refuse_rate=1.0)
    first, second = active(sim, 2)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        sid = await subscribe_book(client, [first])
        await client.send("update_subscription", {"sid": sid, "action": "add_markets", "market_tickers": [second]})
        refused = await client.recv()
        assert refused["type"] == "error" and refused["msg"]["code"] == 18
        await client.send("update_subscription", {"sid": sid, "action": "get_snapshot", "market_tickers": [second]})
        assert (await client.recv())["msg"]["code"] == 11  # not in the subscription


@pytest.mark.asyncio
async def test_add_markets_answered_late_comes_after_later_commands(make_sim):
    sim = await make_sim(seed=4, markets=6, add_markets_delay_s=1.0)
    first, second = active(sim, 2)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        sid = await subscribe_book(client, [first])
        await client.send("update_subscription", {"sid": sid, "action": "add_markets", "market_tickers": [second]})
        assert await client.until_barrier() == []  # answered after the barrier
        ok, snapshot = await client.recv_n(2)
        assert ok["type"] == "ok" and snapshot["msg"]["market_ticker"] == second


@pytest.mark.asyncio
async def test_outage_closes_connections_refuses_handshakes_and_rest_while_the_exchange_runs(make_sim):
    engine = EngineConfig(markets=6, lifecycle_probability=0.3)
    sim = await make_sim(config=SimulatorConfig(engine=engine), seed=6)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await subscribe_book(client, active(sim, 2))
        sim.outage(600)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(sim):
            pass
    assert refused.value.response.status_code == 503
    assert (await rest_get(sim, "/markets"))[0] == 503
    before = set(sim.markets())
    happened = sim.step(300)  # the exchange keeps running: trades and new markets
    created = set(sim.markets()) - before
    assert created and any(type(e).__name__ == "TradeExecuted" for e in happened)
    start_ms, _ = sim.outages[-1]
    sim.end_outage()
    status, body = await rest_get(sim, "/markets", {"min_created_ts": start_ms // 1000, "limit": 1000})
    assert status == 200 and created <= {m["ticker"] for m in body["markets"]}
    async with ws_connect(sim) as ws:
        await subscribe_book(Client(ws), sorted(t for t in created if sim.markets()[t].status == "active")[:1])


@pytest.mark.asyncio
async def test_outages_come_on_their_own_every_so_often(make_sim):
    sim = await make_sim(seed=6, markets=2, outage_every_s=0.05, outage_duration_s=600)
    while not sim.outages:
        await asyncio.sleep(0.01)
    assert sim.in_outage() and (await rest_get(sim, "/series"))[0] == 503


@pytest.mark.asyncio
async def test_handshake_answers_401_for_a_while_then_recovers(make_sim):
    sim = await make_sim(seed=7, markets=2, auth_fail_until_s=600)
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(sim):
            pass
    assert refused.value.response.status_code == 401
    assert (await rest_get(sim, "/series"))[0] == 200  # REST still answers
    sim.refuse_auth(0)
    async with ws_connect(sim) as ws:
        await subscribe_book(Client(ws), active(sim, 1))


@pytest.mark.asyncio
async def test_combo_markets_flood_markets_unless_excluded_and_have_their_own_lifecycle(make_sim):
    engine = EngineConfig(markets=6, combo_markets=5, lifecycle_probability=0.5)
    sim = await make_sim(config=SimulatorConfig(engine=engine), seed=8)
    combos = {t for t, m in sim.markets().items() if m.is_combo}
    assert len(combos) == 5
    _, body = await rest_get(sim, "/markets", {"limit": 1000})
    listed = {m["ticker"]: m for m in body["markets"]}
    assert combos <= set(listed) and listed[min(combos)]["mve_selected_legs"]
    _, body = await rest_get(sim, "/markets", {"limit": 1000, "mve_filter": "exclude"})
    assert not combos & {m["ticker"] for m in body["markets"]}
    _, body = await rest_get(sim, "/markets", {"limit": 1000, "mve_filter": "only"})
    assert {m["ticker"] for m in body["markets"]} == combos
    _, body = await rest_get(sim, "/events", {"with_nested_markets": "true"})
    assert not combos & {m["ticker"] for e in body["events"] for m in e["markets"]}
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["market_lifecycle_v2", "multivariate_market_lifecycle"]})
        replies = await client.recv_n(2)
        sid = {r["msg"]["channel"]: r["msg"]["sid"] for r in replies}
        sim.step(400)
        frames = await client.until_barrier()
    created = {f["msg"]["market_ticker"]: f for f in frames if f["msg"].get("event_type") == "created"}
    new_combos = {t for t in sim.markets() if sim.markets()[t].is_combo} - combos
    assert new_combos and new_combos <= set(created)
    for ticker, frame in created.items():
        expected = "multivariate_market_lifecycle" if ticker in new_combos else "market_lifecycle_v2"
        assert frame["type"] == expected and frame["sid"] == sid[expected]


@pytest.mark.asyncio
async def test_rest_reads_cost_ten_tokens(make_sim, monkeypatch):
    now = {"t": 0.0}
    monkeypatch.setattr(TokenBucket, "timer", staticmethod(lambda: now["t"]))
    sim = await make_sim(markets=1, rest_rate_per_s=20, rest_read_tokens=10)  # 40 tokens: 4 reads
    assert [(await rest_get(sim, "/series"))[0] for _ in range(5)] == [200] * 4 + [429]
    now["t"] += 0.5  # ten tokens back: one read
    assert [(await rest_get(sim, "/series"))[0] for _ in range(2)] == [200, 429]


@pytest.mark.asyncio
async def test_markets_filter_by_status_and_update_time(make_sim):
    clock = {"now": 1_800_000_000_000}
    engine = EngineConfig(markets=6, lifecycle_probability=0.5)
    sim = await make_sim(config=SimulatorConfig(engine=engine), seed=9, clock=lambda: clock["now"])
    clock["now"] += 10_000
    sim.step(200)
    _, body = await rest_get(sim, "/markets", {"limit": 1000, "status": "open"})
    assert body["markets"] and all(m["status"] == "active" for m in body["markets"])
    _, body = await rest_get(sim, "/markets", {"limit": 1000, "min_updated_ts": (clock["now"] - 5_000) // 1000})
    changed = {t for t, m in sim.markets().items() if m.updated_ms >= clock["now"] - 5_000}
    assert changed and {m["ticker"] for m in body["markets"]} <= changed


def test_realistic_is_hostile_and_overridable_and_the_default_stays_friendly():
    config = realistic(market_cap_per_subscription=5)
    assert config.market_cap_per_subscription == 5 and config.reply_seq == "mixed"
    assert config.command_rate_per_s and config.outage_every_s and not config.lifecycle_seq
    assert config.engine.combo_markets > 0 and config.rest_read_tokens == 10
    friendly = SimulatorConfig()
    assert friendly.market_cap_per_subscription is None and friendly.outage_every_s is None


def test_kalshi_sim_serves_realistic_unless_friendly():
    parser = Command().create_parser("manage.py", "kalshi_sim")
    served = build_config(vars(parser.parse_args(["--markets", "7"])))
    assert served == dataclasses.replace(realistic(engine=served.engine), seed=0)
    assert served.engine.markets == 7 and served.engine.combo_markets > 0
    friendly = build_config(vars(parser.parse_args(["--friendly", "--market-cap", "9"])))
    assert friendly.market_cap_per_subscription == 9 and friendly.outage_every_s is None
    assert friendly == dataclasses.replace(SimulatorConfig(), engine=friendly.engine, market_cap_per_subscription=9)
