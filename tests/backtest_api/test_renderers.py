"""The API's JSON, written by orjson, reads as DRF's own renderer writes it."""

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from backtest_api.renderers import EnvelopeJSONRenderer, _compact


def test_orjson_output_equals_drf_output_for_every_kind_of_value():
    data = {
        "text": "Kalshi — ünïcode", "int": 2**62, "float": 0.1 + 0.2, "seconds": 1.25,
        "none": None, "bools": [True, False], "nested": {"list": [1, "2", {"3": 3.0}]},
        "utc": datetime(2026, 11, 24, 13, 5, 0, 123456, tzinfo=timezone.utc),
        "whole_second": datetime(2026, 11, 24, 13, 5, tzinfo=timezone.utc),
        "offset": datetime(2026, 11, 24, 13, 5, tzinfo=timezone(timedelta(hours=-5))),
        "day": date(2026, 11, 24), "decimal": Decimal("0.5600"), "uuid": uuid.UUID(int=7),
        "lazy": gettext_lazy("Not found."), "duration": timedelta(seconds=90),
    }
    drf = JSONRenderer()
    drf.compact = True
    expected = drf.render(data)
    assert _compact(data, drf.encoder_class().default) == expected


def test_tiny_floats_differ_only_in_how_the_exponent_is_written():
    # json writes 5e-06, orjson 5e-6: the same number to any JSON reader.
    drf = JSONRenderer()
    drf.compact = True
    data = {"response_time": 5e-06, "neg": -1.5e-7}
    ours = _compact(data, drf.encoder_class().default)
    assert ours == b'{"response_time":5e-6,"neg":-1.5e-7}'
    assert json.loads(ours) == json.loads(drf.render(data)) == data


def test_what_orjson_refuses_falls_back_to_drf():
    renderer = EnvelopeJSONRenderer()
    assert _compact({"big": 2**70}, renderer.encoder_class().default) is None
    assert renderer.render({"big": 2**70}) == b'{"big":1180591620717411303424}'
