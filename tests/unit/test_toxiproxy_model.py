"""Pure logic of the toxiproxy server: Go-style JSON, validation, addresses, slicing."""

from __future__ import annotations

import random
import re

import pytest

from faults.toxiproxy import gojson
import asyncio

from faults.toxiproxy.address import AddressError, resolved, same_endpoint, split_host_port
from faults.toxiproxy.model import (
    ApiError,
    ToxicConfig,
    decode,
    error_body,
    ordered_toxics,
    parse_populate,
    parse_proxy_create,
    parse_proxy_update,
    parse_toxic_create,
    parse_toxic_update,
    proxy_json,
)
from faults.toxiproxy.requestid import new_request_id
from faults.toxiproxy.toxics.slicer import slice_sizes


# ------------------------------------------------------------------- gojson


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1, "b": [True, None]}, b'{"a":1,"b":[true,null]}'),
        ("<a&b>", b'"\\u003ca\\u0026b\\u003e"'),
        ("line\nbreak\u2028", b'"line\\nbreak\\u2028"'),
        ("\x01", b'"\\u0001"'),
        ("é", "\"é\"".encode()),
        (gojson.Float32(1.0), b"1"),
        (gojson.Float32(0.1), b"0.1"),
        (gojson.Float32(0.123456789), b"0.12345679"),
        (gojson.Float32(0.5), b"0.5"),
        (gojson.Float32(0.0), b"0"),
    ],
)
def test_dumps_like_go(value: object, expected: bytes) -> None:
    assert gojson.dumps(value) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "EOF"),
        (b"   \n", "EOF"),
        (b'{"a": ', "unexpected EOF"),
        (b"garbage", "invalid character 'g' looking for beginning of value"),
    ],
)
def test_decode_errors_are_worded_like_go(body: bytes, message: str) -> None:
    with pytest.raises(ApiError) as error:
        decode(body)
    assert error.value.status == 400
    assert error.value.message == f"bad request body: {message}"


def test_decode_reads_the_first_value_only() -> None:
    assert decode(b'{"a":1} trailing') == {"a": gojson.Number("1")}


def test_error_body() -> None:
    assert error_body("proxy not found", 404) == b'{"error":"proxy not found","status":404}\n'


# ------------------------------------------------------------------ proxies


def test_proxy_create_defaults_and_case_insensitive_fields() -> None:
    item = parse_proxy_create({"NAME": "pg", "upstream": "db:5432", "unknown": 1})
    assert (item.name, item.listen, item.upstream, item.enabled) == ("pg", "", "db:5432", True)
    assert parse_proxy_create({"name": "a", "upstream": "b", "enabled": None}).enabled is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "missing required field: name"),
        ({"name": ""}, "missing required field: name"),
        ({"name": "a"}, "missing required field: upstream"),
        ({"name": 3, "upstream": "b"}, "bad request body: json: cannot unmarshal number into Go struct field Proxy.name of type string"),
        ({"name": "a", "upstream": "b", "enabled": "yes"}, "bad request body: json: cannot unmarshal string into Go struct field Proxy.enabled of type bool"),
        ([1], "bad request body: json: cannot unmarshal array into Go value of type toxiproxy.Proxy"),
    ],
)
def test_proxy_create_errors(body: object, message: str) -> None:
    with pytest.raises(ApiError) as error:
        parse_proxy_create(body)
    assert (error.value.status, error.value.message) == (400, message)


def test_proxy_update_keeps_absent_fields() -> None:
    update = parse_proxy_update({"enabled": False, "name": "ignored"}, "127.0.0.1:1", "up:2", True)
    assert (update.listen, update.upstream, update.enabled) == ("127.0.0.1:1", "up:2", False)


def test_populate_validates_all_items_and_toxics() -> None:
    items = parse_populate(
        [{"name": "a", "upstream": "x:1"}, {"name": "b", "upstream": "y:2", "enabled": False, "toxics": [{"type": "noop"}]}]
    )
    assert [i.name for i in items] == ["a", "b"] and items[1].enabled is False
    assert items[0].toxics is None and items[1].toxics is not None and items[1].toxics[0].name == "noop_downstream"
    assert parse_populate(None) == []
    with pytest.raises(ApiError, match="missing required field: upstream at proxy 2"):
        parse_populate([{"name": "a", "upstream": "x:1"}, {"name": "b"}])
    with pytest.raises(ApiError, match="toxic already exists at proxy 1 toxic 2"):
        parse_populate([{"name": "a", "upstream": "x:1", "toxics": [{"type": "noop"}, {"type": "noop"}]}])
    with pytest.raises(ApiError, match="cannot unmarshal object into Go value of type"):
        parse_populate({"name": "a"})


def test_proxy_json_key_order() -> None:
    spec = ToxicConfig("t", "noop", "upstream", 1.0, {})
    assert gojson.dumps(proxy_json("p", "127.0.0.1:1", "u:2", True, [spec])) == (
        b'{"name":"p","listen":"127.0.0.1:1","upstream":"u:2","enabled":true,"Logger":{},'
        b'"toxics":[{"attributes":{},"name":"t","type":"noop","stream":"upstream","toxicity":1}]}'
    )


# ------------------------------------------------------------------- toxics


def test_toxic_defaults() -> None:
    spec = parse_toxic_create({"type": "latency", "stream": "UpStream", "attributes": {"latency": 5}}, [])
    assert spec.name == "latency_UpStream" and spec.direction.value == "upstream"
    assert spec.attributes == {"latency": 5, "jitter": 0} and spec.toxicity == 1.0
    assert list(spec.to_json()) == ["attributes", "name", "type", "stream", "toxicity"]


@pytest.mark.parametrize(
    ("body", "taken", "status", "message"),
    [
        ({"type": "x", "stream": "side"}, [], 400, "stream was invalid, can be either upstream or downstream"),
        ({"type": "x"}, [], 400, "invalid toxic type"),
        ({}, [], 400, "invalid toxic type"),
        ({"type": "noop", "name": "n"}, ["n"], 409, "toxic already exists"),
        ({"type": "noop"}, ["noop_downstream"], 409, "toxic already exists"),
        (
            {"type": "latency", "attributes": {"latency": 1.5}},
            [],
            400,
            "bad request body: json: cannot unmarshal number 1.5 into Go struct field LatencyToxic.attributes.latency of type int64",
        ),
        (
            {"type": "slicer", "attributes": {"average_size": True}},
            [],
            400,
            "bad request body: json: cannot unmarshal bool into Go struct field SlicerToxic.attributes.average_size of type int",
        ),
        ({"type": "noop", "toxicity": "1"}, [], 400, "bad request body: json: cannot unmarshal string into Go struct field ToxicWrapper.toxicity of type float32"),
        ({"type": "slicer", "attributes": {"average_size": 0}}, [], 400, "invalid attribute average_size: must be at least 1"),
        ({"type": "latency", "attributes": {"latency": -1}}, [], 400, "invalid attribute latency: must be at least 0"),
        ({"type": "noop", "toxicity": 1.01}, [], 400, "toxicity must be between 0 and 1"),
        ({"type": "noop", "toxicity": -1}, [], 400, "toxicity must be between 0 and 1"),
    ],
)
def test_toxic_create_errors(body: dict[str, object], taken: list[str], status: int, message: str) -> None:
    with pytest.raises(ApiError) as error:
        parse_toxic_create(body, taken)
    assert (error.value.status, error.value.message) == (status, message)


def test_bandwidth_rate_may_be_zero_or_negative() -> None:
    assert parse_toxic_create({"type": "bandwidth", "attributes": {"rate": -1}}, []).attributes == {"rate": -1}


def test_toxic_update_merges_attributes_and_keeps_toxicity() -> None:
    current = parse_toxic_create({"type": "latency", "toxicity": 0.5, "attributes": {"latency": 5, "jitter": 2}}, [])
    updated = parse_toxic_update({"attributes": {"latency": 9}, "type": "noop"}, current)
    assert updated.attributes == {"latency": 9, "jitter": 2} and updated.toxicity == 0.5 and updated.type == "latency"
    assert parse_toxic_update({"toxicity": 0}, current).toxicity == 0.0
    with pytest.raises(ApiError, match="toxicity must be between 0 and 1"):
        parse_toxic_update({"toxicity": 3}, current)


def test_toxics_are_listed_upstream_first() -> None:
    specs = [
        ToxicConfig("d1", "noop", "downstream", 1.0, {}),
        ToxicConfig("u1", "noop", "upstream", 1.0, {}),
        ToxicConfig("d2", "noop", "Downstream", 1.0, {}),
        ToxicConfig("u2", "noop", "UPSTREAM", 1.0, {}),
    ]
    assert [t.name for t in ordered_toxics(specs)] == ["u1", "u2", "d1", "d2"]


# ---------------------------------------------------------------- addresses


def test_split_host_port() -> None:
    assert split_host_port("localhost:80") == ("localhost", "80")
    assert split_host_port("[::1]:80") == ("::1", "80")
    assert split_host_port(":80") == ("", "80")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("nonsense", "address nonsense: missing port in address"),
        ("a:b:c", "address a:b:c: too many colons in address"),
        ("[::1", "address [::1: missing ']' in address"),
        ("[::1]", "address [::1]: missing port in address"),
        ("[::1]x:80", "address [::1]x:80: missing port in address"),
        ("[::1]:80:1", "address [::1]:80:1: too many colons in address"),
        ("a[b:80", "address a[b:80: unexpected '[' in address"),
        ("a]b:80", "address a]b:80: unexpected ']' in address"),
        ("1.2.3.4:99999", "address 99999: invalid port"),
        ("1.2.3.4:-1", "address -1: invalid port"),
        ("1.2.3.4:nosuchservice", "lookup tcp/nosuchservice: unknown port"),
        ("999.1.1.1:80", "lookup 999.1.1.1: no such host"),
    ],
)
def test_addresses_are_refused_in_go_words(address: str, message: str) -> None:
    """What Go's net.ResolveTCPAddr answers (the 500 text of PATCH with a bad listen)."""
    with pytest.raises(AddressError) as error:
        asyncio.run(resolved(address))
    assert str(error.value) == message


def test_resolved_addresses() -> None:
    assert asyncio.run(resolved("localhost:3310")) == "127.0.0.1:3310"
    assert asyncio.run(resolved(":3310")) == "127.0.0.1:3310"
    assert asyncio.run(resolved("")) == "127.0.0.1:0"
    assert asyncio.run(resolved("10.0.0.1:+80")) == "10.0.0.1:80"  # Go's port parser takes a sign
    assert asyncio.run(resolved("[::1]:1")) == "[::1]:1"


@pytest.mark.parametrize(
    ("target", "listener", "same"),
    [
        (("127.0.0.1", 80), ("127.0.0.1", 80), True),
        (("localhost", 80), ("127.0.0.1", 80), True),
        (("LOCALHOST", 80), ("::1", 80), True),
        (("", 80), ("127.0.0.1", 80), True),
        (("127.0.0.5", 80), ("0.0.0.0", 80), True),
        (("0.0.0.0", 80), ("::", 80), True),
        (("127.0.0.1", 81), ("127.0.0.1", 80), False),
        (("10.1.2.3", 80), ("127.0.0.1", 80), False),
        (("db", 80), ("127.0.0.1", 80), False),
        (("127.0.0.1", 0), ("127.0.0.1", 0), False),
    ],
)
def test_same_endpoint(target: tuple[str, int], listener: tuple[str, int], same: bool) -> None:
    assert same_endpoint(target, listener) is same


# ------------------------------------------------------------ slicer, ids


@pytest.mark.parametrize(("length", "average", "variation"), [(1, 1, 0), (1000, 10, 0), (1000, 10, 50), (37, 5, 4), (5, 100, 0)])
def test_slice_sizes_cover_the_chunk(length: int, average: int, variation: int) -> None:
    sizes = slice_sizes(length, average, variation, random.Random(1))
    assert sum(sizes) == length and all(size > 0 for size in sizes)
    if variation == 0 and length > average:
        assert max(sizes) <= average


def test_request_ids_look_like_xids_and_are_unique() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-v]{20}", i) for i in ids)
