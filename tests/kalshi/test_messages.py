"""Parsing Kalshi frames: every example of the pinned specs, legacy shapes, bad input."""

import json
import re
from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from kalshi import messages as m
from kalshi.messages import MalformedFrame, parse_frame

SPECS = Path(__file__).resolve().parents[2] / "docs" / "kalshi-specs"
CURRENT = SPECS / "asyncapi_2026-10.yaml"
LEGACY = SPECS / "asyncapi_2026-03_with_legacy_fields.yaml"

EXPECTED_CLASS = {
    "orderbook_snapshot": m.OrderbookSnapshotMsg,
    "orderbook_delta": m.OrderbookDeltaMsg,
    "trade": m.TradeMsg,
    "market_lifecycle_v2": m.MarketLifecycleMsg,
    "multivariate_market_lifecycle": m.MarketLifecycleMsg,
    "event_lifecycle": m.EventLifecycleMsg,
    "event_fee_update": m.EventFeeUpdateMsg,
    "ticker": m.TickerMsg,
    "subscribed": m.SubscribedMsg,
    "ok": m.OkMsg,
    "unsubscribed": m.UnsubscribedMsg,
    "error": m.ErrorMsg,
}


class SpecLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. (YAML 1.1 reads the keys `yes:`
    and `no:` of legacy book sides as booleans.)"""


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_spec(path):
    return yaml.load(path.read_text(), Loader=SpecLoader)


def server_examples(path):
    """(name, payload) of every server -> client example message in a spec."""
    spec = load_spec(path)
    found = []
    for name, message in spec["components"]["messages"].items():
        for example in message.get("examples", []):
            payload = example["payload"]
            if isinstance(payload, dict) and "type" in payload:
                found.append((f"{path.stem}:{name}:{example['name']}", payload))
    return found


ALL_EXAMPLES = server_examples(CURRENT) + server_examples(LEGACY)


def test_the_specs_have_examples_of_every_stored_type():
    types = {payload["type"] for _, payload in ALL_EXAMPLES}
    assert {"orderbook_snapshot", "orderbook_delta", "trade", "market_lifecycle_v2",
            "event_lifecycle", "ok", "error", "subscribed", "unsubscribed"} <= types


@pytest.mark.parametrize("name,payload", ALL_EXAMPLES, ids=[n for n, _ in ALL_EXAMPLES])
def test_every_spec_example_parses(name, payload):
    msg = parse_frame(json.dumps(payload))
    assert msg.type == payload["type"]
    assert isinstance(msg, EXPECTED_CLASS.get(payload["type"], m.UnhandledMsg))
    assert msg.seq == payload.get("seq")
    assert msg.id == payload.get("id")
    if payload["type"] != "subscribed":
        assert msg.sid == payload.get("sid")
    else:
        assert msg.sid == payload["msg"]["sid"]


def example(path, message_name, index=0):
    spec = load_spec(path)
    return spec["components"]["messages"][message_name]["examples"][index]["payload"]


def test_current_snapshot_example_values():
    msg = parse_frame(json.dumps(example(CURRENT, "orderbookSnapshot")))
    assert msg.market_ticker == "FED-23DEC-T3.00"
    assert msg.yes == [(D("0.0800"), D("300.00")), (D("0.2200"), D("333.00"))]
    assert msg.no == [(D("0.5400"), D("20.00")), (D("0.5600"), D("146.00"))]
    assert not msg.legacy


def strip_current_fields(msg: dict) -> dict:
    """Only the legacy integer fields of a frame that carries both."""
    return {k: v for k, v in msg.items() if not (k.endswith("_fp") or k.endswith("_dollars"))}


def test_legacy_snapshot_reads_the_same_book():
    current = parse_frame(json.dumps(example(CURRENT, "orderbookSnapshot")))
    legacy_payload = example(LEGACY, "orderbookSnapshot")
    both = parse_frame(json.dumps(legacy_payload))
    cents_only = parse_frame(
        json.dumps({**legacy_payload, "msg": strip_current_fields(legacy_payload["msg"])})
    )
    three_dp = dict(legacy_payload["msg"])
    for key in ("yes", "no", "yes_dollars_fp", "no_dollars_fp"):
        three_dp.pop(key)
    dollars_only = parse_frame(json.dumps({**legacy_payload, "msg": three_dp}))
    for msg in (both, cents_only, dollars_only):
        assert (msg.yes, msg.no) == (current.yes, current.no)
    assert cents_only.legacy and dollars_only.legacy


def test_legacy_delta_reads_the_same_change():
    current = parse_frame(json.dumps(example(CURRENT, "orderbookDelta")))
    payload = example(LEGACY, "orderbookDelta")
    cents_only = parse_frame(json.dumps({**payload, "msg": strip_current_fields(payload["msg"])}))
    assert (cents_only.side, cents_only.price, cents_only.delta) == (
        current.side, current.price, current.delta) == ("yes", D("0.9600"), D("-54.00"))
    assert cents_only.legacy
    # Without ts_ms the deprecated RFC 3339 ts is the exchange time.
    assert cents_only.ts == datetime(2022, 11, 22, 20, 44, 1, tzinfo=timezone.utc) == current.ts


def test_legacy_trade_reads_the_same_trade():
    current = parse_frame(json.dumps(example(CURRENT, "trade")))
    payload = example(LEGACY, "trade")
    cents_only = parse_frame(json.dumps({**payload, "msg": strip_current_fields(payload["msg"])}))
    for msg in (cents_only, parse_frame(json.dumps(payload))):
        assert (msg.trade_id, msg.yes_price, msg.no_price, msg.count, msg.ts) == (
            current.trade_id, D("0.3600"), D("0.6400"), D("136.00"), current.ts)
    assert cents_only.taker_outcome_side is None and cents_only.taker_side == "no"
    # The oldest shape called the YES price just `price`.
    oldest = {k: v for k, v in cents_only_msg(payload).items() if k not in ("yes_price", "no_price")}
    oldest["price"] = 36
    msg = parse_frame(json.dumps({**payload, "msg": oldest}))
    assert (msg.yes_price, msg.no_price) == (D("0.3600"), D("0.6400"))


def cents_only_msg(payload):
    return strip_current_fields(payload["msg"])


@pytest.mark.parametrize(
    "price,size,expected",
    [
        ('"0.9600"', '"-54.00"', (D("0.9600"), D("-54.00"))),
        ("0.96", "-54", (D("0.9600"), D("-54.00"))),  # JSON numbers
        ("0.0001", "74.77", (D("0.0001"), D("74.77"))),  # sub-cent, fractional
        ('"0.123"', '"0.01"', (D("0.1230"), D("0.01"))),
    ],
)
def test_numbers_as_strings_or_json_numbers(price, size, expected):
    raw = (
        '{"type":"orderbook_delta","sid":1,"seq":1,"msg":{"market_ticker":"X","market_id":"u",'
        f'"price_dollars":{price},"delta_fp":{size},"side":"no","ts_ms":1700000000123}}}}'
    )
    msg = parse_frame(raw)
    assert (msg.price, msg.delta) == expected
    assert msg.ts == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)


def test_json_numbers_are_read_exactly_not_through_float():
    # 0.1 + 0.2 style dust: a float would be 0.30000000000000004 somewhere.
    raw = ('{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"X",'
           '"market_id":"u","yes_dollars_fp":[[0.3, 0.07], [0.0003, 12345678901.23]]}}')
    msg = parse_frame(raw)
    assert msg.yes == [(D("0.3000"), D("0.07")), (D("0.0003"), D("12345678901.23"))]


def test_a_missing_side_is_an_empty_side():
    raw = '{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"X","market_id":"u"}}'
    msg = parse_frame(raw)
    assert msg.yes == [] and msg.no == []


def test_ok_with_a_list_is_list_subscriptions_and_with_a_dict_an_update():
    listed = parse_frame('{"id":8,"type":"ok","msg":[{"channel":"orderbook_delta","sid":1},'
                         '{"channel":"trade","sid":2}]}')
    assert listed.subscriptions == [("orderbook_delta", 1), ("trade", 2)]
    assert listed.market_tickers is None
    update = parse_frame('{"id":10,"sid":1,"seq":222,"type":"ok","msg":{"market_tickers":["A","B"]}}')
    assert update.market_tickers == ["A", "B"] and update.subscriptions is None
    assert (update.sid, update.seq) == (1, 222)


def test_errors_carry_code_and_terminal_flag():
    msg = parse_frame('{"id":13,"sid":3,"seq":9,"type":"error","msg":{"code":25,'
                      '"msg":"Subscription buffer overflow","market_ticker":"A"}}')
    assert (msg.code, msg.sid, msg.seq, msg.market_tickers) == (25, 3, 9, ["A"])
    assert msg.terminal
    assert not parse_frame('{"type":"error","msg":{"code":7,"msg":"Unknown"}}').terminal


def test_lifecycle_determined_and_event_lifecycle():
    msg = parse_frame('{"type":"market_lifecycle_v2","sid":13,"seq":7,"msg":{"market_ticker":'
                      '"X-1","event_type":"determined","result":"yes","settlement_value":"1.0000",'
                      '"determination_ts":1694722000}}')
    assert (msg.result, msg.settlement_value) == ("yes", D("1.0000"))
    assert msg.ts == datetime.fromtimestamp(1694722000, timezone.utc)
    created = parse_frame(json.dumps(example(CURRENT, "marketLifecycleV2")))
    assert created.event_type == "created" and created.event_ticker == "INXD-23SEP14"


@pytest.mark.parametrize(
    "raw,reason",
    [
        ("not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"sid": 1}', "no string `type`"),
        ('{"type":"orderbook_delta","sid":"2","seq":3,"msg":{}}', "`sid` is not an integer"),
        ('{"type":"orderbook_delta","sid":2,"seq":3}', "without a msg"),
        ('{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"X","side":"yes",'
         '"price_dollars":"0.12345","delta_fp":"1.00"}}', "finer than"),
        ('{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"X","side":"maybe",'
         '"price_dollars":"0.1200","delta_fp":"1.00"}}', "side"),
        ('{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"X","side":"yes",'
         '"price_dollars":"0.1200","delta_fp":"1.001"}}', "finer than"),
        ('{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"X","side":"yes",'
         '"price_dollars":"abc","delta_fp":"1.00"}}', "not a number"),
        ('{"type":"orderbook_snapshot","sid":2,"seq":3,"msg":{"market_ticker":"X",'
         '"yes_dollars_fp":[["0.1000"]]}}', "pair"),
        ('{"type":"orderbook_snapshot","sid":2,"seq":3,"msg":{"market_id":"u"}}', "market_ticker"),
        ('{"type":"trade","sid":2,"seq":3,"msg":{"trade_id":"t","market_ticker":"X",'
         '"yes_price_dollars":"0.5000","count_fp":"1.00"}}', "no time"),
        ('{"type":"trade","sid":2,"seq":3,"msg":{"trade_id":"t","market_ticker":"X",'
         '"yes_price_dollars":true,"count_fp":"1.00","ts_ms":1}}', "not a number"),
        ('{"type":"error","msg":{"code":"x","msg":"?"}}', "code"),
        ('{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"X","side":"yes",'
         '"price_dollars":"1.5000","delta_fp":"1.00"}}', "outside [0, 1]"),
        ('{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"X","side":"yes",'
         '"price":150,"delta":1}}', "outside [0, 1]"),
        ('{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"X","side":"yes",'
         '"price_dollars":"0.5000","delta_fp":"10000000000000000.00"}}', "out of range"),
    ],
)
def test_malformed_frames_raise_with_reason_and_raw(raw, reason):
    with pytest.raises(MalformedFrame) as info:
        parse_frame(raw)
    assert reason in info.value.reason
    assert info.value.raw == raw


def test_unknown_types_keep_their_sequence_numbers():
    msg = parse_frame('{"type":"rfq_created","sid":15,"seq":11,"msg":{"id":"rfq_1"}}')
    assert isinstance(msg, m.UnhandledMsg) and (msg.sid, msg.seq) == (15, 11)
