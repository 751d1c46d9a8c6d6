"""Request-head parsing of the fault proxy's HTTP server: strict framing, Go's refusal bytes."""

from __future__ import annotations

import pytest

from faults.toxiproxy.http import Framing, Rejected, Response, parse_head

GO_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def refusal(data: bytes) -> bytes:
    with pytest.raises(Rejected) as error:
        parse_head(data)
    return error.value.raw


def test_a_plain_request() -> None:
    request, framing = parse_head(head("POST /proxies/a%2Fb?x=1 HTTP/1.1", "Host: h", "Content-Length: 12", "X: 1", "x: 2"))
    assert (request.method, request.path, request.version) == ("POST", "/proxies/a/b", "HTTP/1.1")
    assert request.headers == {"host": "h", "content-length": "12", "x": "1, 2"}
    assert framing == Framing(length=12)
    assert parse_head(head("GET http://h/version HTTP/1.1", "Host: h"))[0].path == "/version"
    assert parse_head(head("GET /caf%C3%A9 HTTP/1.0"))[0].path == "/café"  # HTTP/1.0 needs no Host
    assert parse_head(head("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: Chunked"))[1] == Framing(chunked=True)
    assert parse_head(head("POST / HTTP/1.1", "Host: h", "Content-Length: 007"))[1] == Framing(length=7)


@pytest.mark.parametrize(
    "lines",
    [
        ("POST / HTTP/1.1", "Host: h", "Content-Length: 1_0"),
        ("POST / HTTP/1.1", "Host: h", "Content-Length: +4"),
        ("POST / HTTP/1.1", "Host: h", "Content-Length: -1"),
        ("POST / HTTP/1.1", "Host: h", "Content-Length: \u00b2"),
        ("POST / HTTP/1.1", "Host: h", "Content-Length: 1" + "0" * 5000),
        ("POST / HTTP/1.1", "Host: h", "Content-Length: 4", "Content-Length: 5"),
        ("POST / HTTP/1.1", "Host: h", "Content-Length: 4", "Transfer-Encoding: chunked"),
        ("GET / HTTP/1.1", "Host: h", "Bad Name: x"),
        ("GET / HTTP/1.1", "Host: h", " folded: x"),
        ("GET / HTTP/1.1", "Host: h", "NoColon"),
        ("GET /a b HTTP/1.1", "Host: h"),
        ("GET nopath HTTP/1.1", "Host: h"),
        ("G(T / HTTP/1.1", "Host: h"),
        ("GET / HTTP/1", "Host: h"),
        ("GET / FTP/1.1", "Host: h"),
    ],
)
def test_malformed_heads_get_gos_plain_400(lines: tuple[str, ...]) -> None:
    assert refusal(head(*lines)) == GO_400


@pytest.mark.parametrize(
    ("lines", "detail"),
    [
        (("GET / HTTP/1.1",), "missing required Host header"),
        (("GET / HTTP/1.1", "Host: a", "Host: b"), "too many Host headers"),
        (("GET / HTTP/1.1", "Host: a b"), "malformed Host header"),
        (("GET / HTTP/1.1", "Host: a", "X: \x01"), "invalid header value"),
    ],
)
def test_refusals_with_a_reason_are_worded_like_go(lines: tuple[str, ...], detail: str) -> None:
    status = f"400 Bad Request: {detail}"
    assert refusal(head(*lines)) == (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{status}".encode()
    )


@pytest.mark.parametrize("encodings", [("xchunkedx",), ("gzip, chunked",), ("chunked", "chunked")])
def test_unknown_transfer_encodings_get_gos_501(encodings: tuple[str, ...]) -> None:
    lines = ("POST / HTTP/1.1", "Host: h", *(f"Transfer-Encoding: {e}" for e in encodings))
    assert refusal(head(*lines)) == (
        b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n\r\nUnsupported transfer encoding"
    )


def test_http2_version_gets_gos_505() -> None:
    assert refusal(head("GET / HTTP/2.0", "Host: h")).startswith(
        b"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version\r\n"
    )


def test_response_pieces_are_counted_and_grouped() -> None:
    response = Response(200, [b"a" * 40_000, b"b" * 40_000, b"c"])
    assert response.length == 80_001
    assert b"Content-Length: 80001\r\n" in response.head(keep_alive=True)
    assert [len(chunk) for chunk in response.chunks()] == [80_000, 1]
    assert list(Response(204, b"").chunks()) == []
