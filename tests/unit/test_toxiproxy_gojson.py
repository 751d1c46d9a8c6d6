"""The fault proxy's JSON decoder against Go's encoding/json: messages, numbers, depth, a seeded fuzz."""

from __future__ import annotations

import json
import random

import pytest

from faults.toxiproxy.gojson import MAX_DEPTH, GoDecodeError, Number, decode_first, syntax_error


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"notjson", "invalid character 'o' in literal null (expecting 'u')"),
        (b"nul!", "invalid character '!' in literal null (expecting 'l')"),
        (b"tx", "invalid character 'x' in literal true (expecting 'r')"),
        (b"fals", "unexpected EOF"),
        (b"[truex]", "invalid character 'x' after array element"),
        (b"NaN", "invalid character 'N' looking for beginning of value"),
        (b"-Infinity", "invalid character 'I' in numeric literal"),
        (b"[1.x]", "invalid character 'x' after decimal point in numeric literal"),
        (b"1.x", "invalid character 'x' after decimal point in numeric literal"),
        (b"1e+", "unexpected EOF"),
        (b"[1e+x]", "invalid character 'x' in exponent of numeric literal"),
        (b"[01]", "invalid character '1' after array element"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a":1 "b"}', "invalid character '\"' after object key:value pair"),
        (b"{'a':1}", "invalid character '\\'' looking for beginning of object key string"),
        (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        (b"[1,]", "invalid character ']' looking for beginning of value"),
        (b'"a\tb"', "invalid character '\\t' in string literal"),
        (b'"\\x"', "invalid character 'x' in string escape code"),
        (b'"\\u12G4"', "invalid character 'G' in \\u hexadecimal character escape"),
        (b"\x00", "invalid character '\\x00' looking for beginning of value"),
        (b"\x7f", "invalid character '\\x7f' looking for beginning of value"),
        (b"\xc3\xa9", "invalid character '\u00c3' looking for beginning of value"),
        (b"\x85", "invalid character '\\u0085' looking for beginning of value"),
        (b"", "EOF"),
        (b" \r\n\t", "EOF"),
        (b'{"a": [1, 2', "unexpected EOF"),
        (b"[" * (MAX_DEPTH + 1), "invalid character '[' exceeded max depth"),
        (b'{"a":' * MAX_DEPTH + b"{", "invalid character '{' exceeded max depth"),
    ],
)
def test_errors_are_gos(body: bytes, message: str) -> None:
    with pytest.raises(GoDecodeError) as error:
        decode_first(body)
    assert str(error.value) == message


def test_depth_limit_counts_every_bracket() -> None:
    fits = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert decode_first(fits) is not None
    deep = b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    with pytest.raises(GoDecodeError, match="exceeded max depth"):
        decode_first(deep)
    with pytest.raises(GoDecodeError, match="exceeded max depth"):
        decode_first(b"[" * 100_000 + b"]" * 100_000)  # deeper than Python's own recursion limit


def test_only_the_first_value_is_read() -> None:
    assert decode_first(b'{"a":1} garbage') == {"a": Number("1")}
    assert decode_first(b"0123") == Number("0")  # Go's Decoder stops after "0"
    assert decode_first(b'"s"x') == "s"


def test_invalid_utf8_and_lone_surrogates_become_replacement_characters() -> None:
    assert decode_first(b'"x\\ud800y"') == "x\ufffdy"
    assert decode_first(b'{"\\udfff":"\xff"}') == {"\ufffd": "\ufffd"}
    assert decode_first(b'"\\ud83d\\ude00"') == "\U0001f600"  # a real pair stays


@pytest.mark.parametrize(
    ("text", "int64", "float32"),
    [
        ("5", 5, 5.0),
        ("-0", 0, 0.0),
        ("1.5", None, 1.5),
        ("1e3", None, 1000.0),
        ("9223372036854775807", 2**63 - 1, 9.223372036854776e18),
        ("9223372036854775808", None, 9.223372036854776e18),
        ("1" + "0" * 5000, None, None),
        ("1e300", None, None),
        ("1e-300", None, 0.0),
    ],
)
def test_numbers_convert_like_go(text: str, int64: int | None, float32: float | None) -> None:
    number = decode_first(text.encode())
    assert isinstance(number, Number) and number.text == text
    assert number.as_int64() == int64
    assert number.as_float32() == float32


def _random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(10**20), 10**20)
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)])) for _ in range(rng.randrange(6)))
    if kind in (4, 5):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(rng.randrange(100)): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _plain(value: object) -> object:
    if isinstance(value, Number):
        return json.loads(value.text)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_seeded_fuzz_agrees_with_a_reference_decoder_and_never_crashes() -> None:
    """5,000 valid documents decode like json.loads; 5,000 mutated ones decode or fail with a Go message."""
    rng = random.Random(9)
    alphabet = b'{}[]:,"\\ -+.eE0123456789tfnulrsa\x00\x1f\x80\xff'
    for _ in range(5000):
        document = json.dumps(_random_json(rng)).encode()
        assert _plain(decode_first(document)) == json.loads(document)
        assert syntax_error(document) is None
        mutated = bytearray(document)
        for _ in range(rng.randrange(1, 4)):
            position = rng.randrange(len(mutated) + 1)
            if rng.random() < 0.5 and mutated:
                del mutated[min(position, len(mutated) - 1)]
            else:
                mutated.insert(position, rng.choice(alphabet))
        try:
            decode_first(bytes(mutated))
        except GoDecodeError as error:
            message = str(error)
            assert message in ("EOF", "unexpected EOF") or message.startswith("invalid character '"), message
            assert syntax_error(bytes(mutated)) == message
