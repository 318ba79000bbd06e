"""The WebSocket side: which failures are retried, and a refused key stops the collector."""

import asyncio

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidMessage, InvalidStatus, InvalidUpgrade, InvalidURI
from websockets.frames import Close
from websockets.http11 import Response

from kalshi import auth
from collector.client import Credentials
from collector.rest import KalshiRestError
from collector.ws import is_retryable
from collector.runner import collect
from simulator import Simulator

from .e2e import collector_config


def status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "", Headers()))


@pytest.mark.parametrize("exc", [
    ConnectionClosedError(Close(1011, "overloaded"), None),
    ConnectionClosedError(None, None),  # no close frame: the socket just died
    ConnectionRefusedError(),
    ConnectionResetError(),
    TimeoutError(),
    InvalidMessage("did not receive a valid HTTP response"),
    status(429), status(500), status(502), status(503), status(504),
    status(401), status(403),  # retried slowly and loudly: see collector/ws.py
])
def test_network_trouble_and_overload_are_retried(exc):
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", [
    status(404), status(400),
    InvalidURI("wss//x", "no scheme"), InvalidUpgrade("Upgrade", "h2c"),
    ValueError("a bug"), KeyError("a bug"),
])
def test_wrong_urls_and_bugs_are_fatal(exc):
    assert not is_retryable(exc)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_refused_key_or_a_wrong_url_stops_the_collector_with_the_reason(tmp_path):
    sim = Simulator(seed=2, markets=3, rate=0)
    urls = await sim.start(host="127.0.0.1", port=0)
    good = Credentials(sim.key_id, sim.private_key)
    wrong = Credentials(sim.key_id, auth.generate_private_key())
    try:
        with pytest.raises(KalshiRestError) as refused:
            await asyncio.wait_for(collect(config=collector_config(tmp_path), creds=wrong,
                                           rest_url=urls.rest, ws_url=urls.ws), 30)
        assert refused.value.status == 401
        with pytest.raises(InvalidStatus) as not_found:
            await asyncio.wait_for(collect(config=collector_config(tmp_path), creds=good,
                                           rest_url=urls.rest, ws_url=urls.ws + "-nowhere"), 30)
        assert not_found.value.response.status_code == 404
    finally:
        await sim.stop()
