"""Each fault changes what is sent as it should, and never the truth."""

import json

import pytest
from websockets.exceptions import ConnectionClosed

from simulator import FaultConfig

from .conftest import Client, ws_connect
from .test_ws import active_tickers

pytestmark = pytest.mark.asyncio


async def subscribed_client(sim, ws):
    client = Client(ws)
    await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": active_tickers(sim)})
    sid = (await client.recv())["msg"]["sid"]
    return client, sid


def seqs_of(frames, sid):
    return [f["seq"] for f in frames if isinstance(f, dict) and f.get("sid") == sid and "seq" in f]


async def test_dropped_frames_leave_gaps_in_seq(make_sim):
    sim = await make_sim(seed=1, markets=8, faults=FaultConfig(drop_rate=0.1))
    async with ws_connect(sim) as ws:
        client, sid = await subscribed_client(sim, ws)
        sim.step(300)
        seqs = seqs_of(await client.until_barrier(), sid)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert any(b - a > 1 for a, b in zip(seqs, seqs[1:]))


async def test_duplicated_frames_repeat_a_seq(make_sim):
    sim = await make_sim(seed=1, markets=8, faults=FaultConfig(duplicate_rate=0.1))
    async with ws_connect(sim) as ws:
        client, sid = await subscribed_client(sim, ws)
        sim.step(300)
        seqs = seqs_of(await client.until_barrier(), sid)
    assert len(seqs) > len(set(seqs))
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1))  # nothing lost


async def test_malformed_frames_are_extra_and_unparseable(make_sim):
    sim = await make_sim(seed=1, markets=8, faults=FaultConfig(malformed_rate=0.1))
    async with ws_connect(sim) as ws:
        client, sid = await subscribed_client(sim, ws)
        sim.step(300)
        texts = await client.until_barrier(raw=True)
    parsed, bad = [], 0
    for text in texts:
        try:
            body = json.loads(text)
            assert isinstance(body, dict) and "type" in body
            parsed.append(body)
        except (ValueError, AssertionError):
            bad += 1
    assert bad > 0
    assert seqs_of(parsed, sid) == list(range(1, len(seqs_of(parsed, sid)) + 1))


async def test_numbers_instead_of_strings_are_still_exact(make_sim):
    sim = await make_sim(seed=1, markets=8, faults=FaultConfig(numeric_rate=1.0))
    async with ws_connect(sim) as ws:
        client, _ = await subscribed_client(sim, ws)
        sim.step(100)
        frames = await client.until_barrier()
    deltas = [f["msg"] for f in frames if f["type"] == "orderbook_delta"]
    assert deltas and all(isinstance(d["price_dollars"], float) for d in deltas)
    assert all(isinstance(d["delta_fp"], (int, float)) for d in deltas)


async def test_disconnect_every_n_frames_closes_the_connection(make_sim):
    sim = await make_sim(seed=1, markets=8, faults=FaultConfig(disconnect_every_frames=20))
    async with ws_connect(sim) as ws:
        client, _ = await subscribed_client(sim, ws)
        sim.step(300)
        received = 0
        with pytest.raises(ConnectionClosed):
            while True:
                await client.recv_raw()
                received += 1
        assert received == 19  # the 20th frame queued is where the server hangs up (after `subscribed`)


async def test_terminal_error_ends_the_subscription(make_sim):
    sim = await make_sim(
        seed=1, markets=8, faults=FaultConfig(terminal_error_rate=0.05, terminal_error_code=10)
    )
    async with ws_connect(sim) as ws:
        client, sid = await subscribed_client(sim, ws)
        sim.step(500)
        frames = await client.until_barrier()
        errors = [f for f in frames if f["type"] == "error"]
        assert len(errors) == 1 and errors[0]["msg"]["code"] == 10 and errors[0]["sid"] == sid
        assert frames[-1] is errors[0]  # nothing more on a dead sid
        await client.send("list_subscriptions")
        assert (await client.recv())["msg"] == []


async def test_a_slow_consumer_gets_error_25(make_sim):
    """One big synchronous burst fills the queue past its bound before anything is sent."""
    sim = await make_sim(seed=1, markets=8, outbound_queue_limit=50)
    async with ws_connect(sim) as ws:
        client, sid = await subscribed_client(sim, ws)
        sim.step(400)
        frames = await client.until_barrier()
        errors = [f for f in frames if f["type"] == "error"]
        assert [e["msg"]["code"] for e in errors] == [25] and errors[0]["sid"] == sid
        assert sid not in sim.connections[0].session.subscriptions


async def test_faults_never_change_the_truth(make_sim):
    calm = await make_sim(seed=9, markets=8, clock=lambda: 1_795_000_000_000)
    stormy = await make_sim(
        seed=9,
        markets=8,
        clock=lambda: 1_795_000_000_000,
        faults=FaultConfig(drop_rate=0.2, duplicate_rate=0.2, malformed_rate=0.2),
    )
    for sim in (calm, stormy):
        async with ws_connect(sim) as ws:
            client, _ = await subscribed_client(sim, ws)
            sim.step(300)
            await client.until_barrier(raw=True)
    assert calm.history == stormy.history
    assert {t: calm.true_book(t) for t in calm.markets()} == {
        t: stormy.true_book(t) for t in stormy.markets()
    }


async def test_the_same_seed_gives_the_same_faults(make_sim):
    runs = []
    for _ in range(2):
        sim = await make_sim(
            seed=4,
            markets=6,
            clock=lambda: 1_795_000_000_000,
            faults=FaultConfig(drop_rate=0.1, duplicate_rate=0.1, malformed_rate=0.1),
        )
        async with ws_connect(sim) as ws:
            client, _ = await subscribed_client(sim, ws)
            sim.step(200)
            runs.append(await client.until_barrier(raw=True))
    assert runs[0] == runs[1]


async def test_reordered_frames_jump_then_go_back(make_sim):
    sim = await make_sim(seed=1, markets=8, faults=FaultConfig(reorder_rate=0.1))
    async with ws_connect(sim) as ws:
        client, sid = await subscribed_client(sim, ws)
        sim.step(300)
        seqs = seqs_of(await client.until_barrier(), sid)
    assert seqs != sorted(seqs) and sorted(seqs) == list(range(1, len(seqs) + 1))


async def test_set_faults_turns_faults_off_on_open_connections(make_sim):
    sim = await make_sim(seed=1, markets=8, faults=FaultConfig(drop_rate=0.5))
    async with ws_connect(sim) as ws:
        client, sid = await subscribed_client(sim, ws)
        await client.until_barrier()  # the (faulted) snapshots
        sim.set_faults(FaultConfig())
        sim.step(200)
        seqs = seqs_of(await client.until_barrier(), sid)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
