from replica.fingerprint import Expectation, Fingerprint, Range

SEED = Fingerprint(handshake="accepted", welcome=False, close_code=1011, close_reason="Internal error", close_after_ms=7.0, closed_by="server")


def test_matching_fingerprint_has_no_mismatches():
    expect = Expectation(handshake="accepted", welcome=False, close_code=1011, close_reason="Internal error", close_after_ms=Range(max=200))
    assert expect.mismatches(SEED) == []


def test_reason_and_timing_are_told_apart():
    expect = Expectation(close_code=1011, close_reason="Service unavailable", close_after_ms=Range(min=1000))
    found = expect.mismatches(SEED)
    assert [m.split(":")[0] for m in found] == ["close_reason", "close_after_ms"]
    assert "expected 'Service unavailable', observed 'Internal error'" in found[0]


def test_unset_fields_are_not_checked():
    assert Expectation().mismatches(SEED) == []
    assert Expectation().describe() == "anything"


def test_range_needs_a_value():
    assert not Range(max=10).contains(None)
    assert Range(min=1, max=2).contains(1.5)
    assert str(Range(min=1, max=2)) == "1..2"
    assert str(Range(max=200)) == "<= 200"


def test_closed_by_client_is_a_different_fingerprint():
    keepalive = SEED.model_copy(update={"close_reason": "keepalive ping timeout", "closed_by": "client"})
    assert Expectation(closed_by="server").mismatches(keepalive) == ["closed_by: expected 'server', observed 'client'"]
    assert "(sent by client)" in keepalive.summary()


def test_summary_of_refused_handshake():
    assert Fingerprint(handshake="http_503").summary() == "handshake http_503"
    assert SEED.summary() == 'accepted, no welcome, 1011 "Internal error" after 7 ms'


def test_describe_is_compact():
    expect = Expectation(handshake="accepted", welcome=False, close_code=1011, close_reason="Internal error", close_after_ms=Range(max=200))
    assert expect.describe() == 'accepted, no welcome, 1011 "Internal error", <= 200 ms'
    assert Expectation(handshake="http_503").describe() == "http_503"


def test_foreign_servers_names_only_other_processes() -> None:
    from replica.observation import foreign_servers

    messages = [
        {"type": "system_message", "server_id": "backend-vm-27239"},
        {"type": "pong", "server_id": "backend-vm-27239"},
        {"type": "pong", "server_id": "backend-host-with-dashes-812"},
        {"type": "no_server_id"},
        "not a mapping",
    ]
    assert foreign_servers(messages, 27239) == ["backend-host-with-dashes-812"]
    assert foreign_servers(messages, 812) == ["backend-vm-27239"]
    assert foreign_servers(messages, 2723) == ["backend-host-with-dashes-812", "backend-vm-27239"]
    assert foreign_servers([], 1) == []
