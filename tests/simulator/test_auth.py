"""Unsigned and wrongly signed requests are refused, on REST and on the WebSocket upgrade."""

import pytest
from websockets.exceptions import InvalidStatus

from kalshi import auth
from simulator.config import WS_PATH

from .conftest import rest_get, wrong_key_headers, ws_connect

pytestmark = pytest.mark.asyncio


async def test_rest_refuses_unsigned_and_wrongly_signed_requests(make_sim):
    sim = await make_sim(markets=3)
    status, body = await rest_get(sim, "/markets", signed=False)
    assert status == 401 and body["code"] == "unauthorized" and "message" in body
    status, _ = await rest_get(
        sim, "/markets", headers=wrong_key_headers("GET", "/trade-api/v2/markets", sim.key_id)
    )
    assert status == 401
    # Signed for another path: the signature covers the path.
    status, _ = await rest_get(sim, "/markets", headers=sim.signed_headers("GET", "/trade-api/v2/events"))
    assert status == 401
    status, body = await rest_get(sim, "/markets", {"limit": 5})  # the query is not signed
    assert status == 200 and len(body["markets"]) >= 3


async def test_stale_timestamps_and_unknown_key_ids_are_refused(make_sim):
    sim = await make_sim(markets=1)
    path = "/trade-api/v2/markets"
    stale = auth.signed_headers(sim.key_id, sim.private_key, "GET", path, now_ms=1_000_000)
    assert (await rest_get(sim, "/markets", headers=stale))[0] == 401
    other = auth.signed_headers("someone-else", sim.private_key, "GET", path)
    assert (await rest_get(sim, "/markets", headers=other))[0] == 401


async def test_websocket_upgrade_needs_a_valid_signature(make_sim):
    sim = await make_sim(markets=2)
    for headers in (
        {},
        wrong_key_headers("GET", WS_PATH, sim.key_id),
        sim.signed_headers("GET", "/trade-api/v2"),
    ):
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(sim, headers=headers):
                pass
        assert refused.value.response.status_code == 401
    async with ws_connect(sim) as ws:
        assert ws.protocol.state.name == "OPEN"


async def test_public_rest_can_be_opened_but_the_websocket_cannot(make_sim):
    sim = await make_sim(markets=2, public_rest_unsigned=True)
    assert (await rest_get(sim, "/markets", signed=False))[0] == 200
    bad = wrong_key_headers("GET", "/trade-api/v2/markets", sim.key_id)
    assert (await rest_get(sim, "/markets", headers=bad))[0] == 401  # a bad signature is still bad
    with pytest.raises(InvalidStatus):
        async with ws_connect(sim, headers={}):
            pass


async def test_accepted_keys_are_the_given_ones(make_sim):
    key = auth.generate_private_key()
    sim = await make_sim(markets=1, accepted_keys={"k1": key.public_key()})
    path = "/trade-api/v2/series"
    assert (await rest_get(sim, "/series", headers=auth.signed_headers("k1", key, "GET", path)))[0] == 200
    assert sim.private_key is None
