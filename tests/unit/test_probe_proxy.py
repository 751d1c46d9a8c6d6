"""The probe skips the environment's proxy settings for loopback addresses only."""

import pytest

from replica.probe import ws_proxy


@pytest.mark.parametrize(
    "url",
    ["ws://127.0.0.1:8000/ws", "ws://127.3.4.5/ws", "wss://[::1]:9/ws", "ws://localhost:80/ws", "ws://127.0.0.1", "ws://[::1]/ws", "ws://LOCALHOST/ws"],
)
def test_loopback_urls_go_direct(url: str) -> None:
    assert ws_proxy(url) is None


@pytest.mark.parametrize("url", ["wss://staging.example.com/ws", "ws://10.0.0.5:8000/ws", "ws://[2001:db8::1]:80/ws"])
def test_other_urls_follow_the_environment(url: str) -> None:
    assert ws_proxy(url) is True
