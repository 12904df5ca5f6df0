"""`http.loads` (msgspec's decoder, json.loads for what it refuses) gives exactly json.loads' objects or error.

Property over generated JSON documents: nested objects and arrays of strings (lone surrogates and escapes
included), integers (beyond 64 bits included), floats (NaN, infinities, -0.0, 1e400 spelled out), booleans and
nulls, duplicate keys, and the bodies a provider may send around them: a UTF-8 BOM, UTF-16, truncated, trailing
garbage, invalid UTF-8. Equal means the same types all the way down (1 is not 1.0, a NaN is a NaN), or json.loads
raising the same exception type.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oneroster_pipeline.client import http
from oneroster_pipeline.client.http import loads

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 3, max_value=2**64 + 3)
           | st.integers(max_value=-(2**63) + 3, min_value=-(2**64) - 3) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u2028", "é", '"\\/']))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


def typed(value: object) -> object:
    """`value` with every scalar tagged by its type (so 1 != 1.0 != True) and NaN comparable."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def outcome(decode, body: bytes) -> object:
    try:
        return typed(decode(body))
    except (ValueError, RecursionError) as error:
        return ("raised", type(error).__name__)


@st.composite
def bodies(draw) -> bytes:
    text = json.dumps(draw(VALUES), ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):  # duplicate keys: the last one wins in json.loads
        text = '{"k": 1, "k": ' + text + ', "z": [1e400, -1E400, 1.0e-400]}'
    body = text.encode("utf-8", "surrogatepass")  # a lone surrogate unescaped is invalid UTF-8
    shape = draw(st.sampled_from(["plain", "bom", "utf16", "truncated", "trailing", "bad byte", "spaces"]))
    if shape == "bom":
        return b"\xef\xbb\xbf" + body
    if shape == "utf16":
        return text.encode("utf-16-le", "surrogatepass")
    if shape == "truncated":
        return body[:draw(st.integers(0, max(len(body) - 1, 0)))]
    if shape == "trailing":
        return body + draw(st.sampled_from([b"x", b",", b" ]", b"\x00"]))
    if shape == "bad byte":
        at = draw(st.integers(0, len(body)))
        return body[:at] + b"\xff" + body[at:]
    return b" \n\t" + body + b"\r\n" if shape == "spaces" else body


@settings(max_examples=600, deadline=None)
@given(bodies())
def test_loads_is_json_loads(body):
    assert outcome(loads, body) == outcome(json.loads, body)


@pytest.mark.parametrize("body", [b'{"a": 1, "a": 2}', b"[18446744073709551616, -9223372036854775809]", b"[NaN]",
                                  b'["\\ud800"]', b"\xef\xbb\xbf{}", b"[1e400]", b"[-0.0, 0.1, 1E5]", b"",
                                  b'{"users": [' + b'{"sourcedId": "x"},' * 3 + b"]}"])
def test_loads_edge_cases(body):
    assert outcome(loads, body) == outcome(json.loads, body)


def test_the_fast_decoder_is_used_when_installed():
    """msgspec is a dependency: when it is importable, `loads` goes through it (a body json.loads accepts only
    through the fallback still decodes)."""
    if importlib.util.find_spec("msgspec") is None:
        pytest.skip("msgspec is not installed in this environment (pip install -e .)")
    assert http._fast_decode is not None
    calls = []
    original = http._fast_decode
    try:
        http._fast_decode = lambda body: calls.append(body) or original(body)
        assert loads(b'{"users": []}') == {"users": []}
        assert math.isnan(loads(b"[NaN]")[0])  # msgspec refuses NaN: json.loads decodes it
    finally:
        http._fast_decode = original
    assert calls == [b'{"users": []}', b"[NaN]"]
