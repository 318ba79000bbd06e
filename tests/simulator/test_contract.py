"""The simulator's messages validate against Kalshi's pinned specs (docs/kalshi-specs)."""

from pathlib import Path

import jsonschema
import pytest
import yaml

from .conftest import Client, rest_get, ws_connect
from .test_ws import active_tickers

pytestmark = pytest.mark.asyncio

SPECS = Path(__file__).resolve().parents[2] / "docs" / "kalshi-specs"


class _Yaml11BoolsOff(yaml.SafeLoader):
    """YAML 1.1 reads bare yes/no as booleans; the specs mean the strings."""


_Yaml11BoolsOff.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Yaml11BoolsOff.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _load(name):
    return yaml.load((SPECS / name).read_text(), Loader=_Yaml11BoolsOff)


def _openapi_nullable(node):
    """OpenAPI 3.0's `nullable: true` is not JSON Schema: spell it as a null type."""
    if isinstance(node, list):
        return [_openapi_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _openapi_nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "$ref" in node:
            return {"anyOf": [{"$ref": node["$ref"]}, {"type": "null"}]}
        if "type" in node:
            node["type"] = [node["type"], "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    return node


ASYNCAPI = _load("asyncapi_2026-10.yaml")
OPENAPI = _openapi_nullable(_load("openapi_3.13_2026-04.yaml"))


def validator(document, schema_name):
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(root)


WS_SCHEMAS = {
    "orderbook_snapshot": "orderbookSnapshotPayload",
    "orderbook_delta": "orderbookDeltaPayload",
    "trade": "tradePayload",
    "ticker": "tickerPayload",
    "event_lifecycle": "eventLifecyclePayload",
    "event_fee_update": "eventFeeUpdatePayload",
    "subscribed": "subscribedResponsePayload",
    "unsubscribed": "unsubscribedResponsePayload",
    "error": "errorResponsePayload",
}


def ws_schema(frame):
    kind = frame["type"]
    if kind == "market_lifecycle_v2":
        return (
            "marketMetadataUpdatedPayload"
            if frame["msg"]["event_type"] == "metadata_updated"
            else "marketLifecycleV2Payload"
        )
    if kind == "ok":
        return "listSubscriptionsResponsePayload" if isinstance(frame["msg"], list) else "okResponsePayload"
    return WS_SCHEMAS[kind]


async def test_every_websocket_message_validates_against_the_asyncapi_spec(make_sim):
    sim = await make_sim(seed=21, markets=10)
    tickers = active_tickers(sim)
    seen = set()
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send(
            "subscribe",
            {"channels": ["orderbook_delta", "trade", "market_lifecycle_v2"], "market_tickers": tickers},
        )
        await client.send(
            "subscribe",
            {"channels": ["ticker"], "market_tickers": tickers[:2], "send_initial_snapshot": True},
        )
        frames = []
        for _ in range(4):
            sim.step(1000)
            frames += await client.until_barrier()
        sid = frames[0]["msg"]["sid"]
        await client.send(
            "update_subscription", {"sid": sid, "market_tickers": tickers[:1], "action": "get_snapshot"}
        )
        await client.send(
            "update_subscription", {"sid": sid, "market_tickers": tickers[:1], "action": "delete_markets"}
        )
        await client.send("unsubscribe", {"sids": [sid]})
        await client.send("unsubscribe", {"sids": [sid]})
        frames += await client.until_barrier()
        await client.send("list_subscriptions")
        frames.append(await client.recv())
    for frame in frames:
        name = ws_schema(frame)
        errors = list(validator(ASYNCAPI, name).iter_errors(frame))
        assert not errors, (name, frame, [e.message for e in errors[:3]])
        seen.add(name)
    assert seen >= set(WS_SCHEMAS.values()) - {"eventFeeUpdatePayload"} | {
        "marketLifecycleV2Payload",
        "okResponsePayload",
        "listSubscriptionsResponsePayload",
    }


REST_CASES = [
    ("/markets", {"limit": 3}, "GetMarketsResponse"),
    ("/markets/trades", {"limit": 20}, "GetTradesResponse"),
    ("/historical/trades", {"limit": 20}, "GetTradesResponse"),
    ("/historical/markets", {}, "GetMarketsResponse"),
    ("/historical/cutoff", {}, "GetHistoricalCutoffResponse"),
    ("/events", {"with_nested_markets": "true"}, "GetEventsResponse"),
    ("/series", {}, "GetSeriesListResponse"),
    ("/markets/NOPE", {}, "ErrorResponse"),
]


async def test_rest_responses_validate_against_the_openapi_spec(make_sim):
    sim = await make_sim(seed=22, markets=10, historical_age_s=1800)
    sim.step(3000)
    market = next(t for t, m in sim.markets().items() if m.status == "active")
    settled = next(
        t for t, m in sim.markets().items() if m.status == "finalized" and m.settled_ms > sim.cutoff_ms()
    )
    event = next(iter(sim.exchange.events))
    series = next(iter(sim.exchange.series))
    cases = REST_CASES + [
        (f"/markets/{market}", {}, "GetMarketResponse"),
        (f"/markets/{settled}", {}, "GetMarketResponse"),
        (f"/markets/{market}/orderbook", {}, "GetMarketOrderbookResponse"),
        ("/markets/orderbooks", {"tickers": market}, "GetMarketOrderbooksResponse"),
        (f"/events/{event}", {"with_nested_markets": "true"}, "GetEventResponse"),
        (f"/series/{series}", {}, "GetSeriesResponse"),
    ]
    for path, params, schema in cases:
        _, body = await rest_get(sim, path, params)
        errors = list(validator(OPENAPI, schema).iter_errors(body))
        assert not errors, (path, [e.message for e in errors[:3]])
