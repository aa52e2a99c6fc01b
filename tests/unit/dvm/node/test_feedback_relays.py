"""Which request relays get the node's feedback: ws/wss only, capped, never local by default."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dvm.node.feedback_relays import MAX_FEEDBACK_RELAYS, is_local_url, select_feedback_relays

PUBLIC_OWN = ("wss://relay.operator.example",)
LOCAL_OWN = ("ws://127.0.0.1:7777",)


def test_public_ws_and_wss_relays_are_kept_in_order_and_capped() -> None:
    asked = [f"wss://r{i}.example" for i in range(6)]
    assert select_feedback_relays(asked, PUBLIC_OWN) == tuple(asked[:MAX_FEEDBACK_RELAYS])
    assert select_feedback_relays(["ws://a.example:8080/x"], PUBLIC_OWN, cap=1) == (
        "ws://a.example:8080/x",
    )


def test_other_schemes_user_info_and_malformed_urls_are_dropped() -> None:
    asked = [
        "http://a.example",
        "wss://user:pw@a.example",
        "wss://",
        "wss://a.example:99999",
        "wss://a.example:0",
        "file:///etc/passwd",
        "wss://ä.example",
        "wss://" + "a" * 300 + ".example",
        "not a url",
    ]
    assert select_feedback_relays(asked, PUBLIC_OWN) == ()


def test_local_and_private_addresses_are_refused_when_the_node_is_public() -> None:
    local = [
        "ws://127.0.0.1:7777",
        "ws://localhost",
        "wss://relay.localhost",
        "ws://printer.local",
        "ws://metadata.internal",
        "ws://10.0.0.5",
        "ws://192.168.1.1",
        "ws://172.16.0.1",
        "ws://169.254.169.254",
        "ws://[::1]:80",
        "ws://[fd00::1]",
        "ws://0.0.0.0",
        "ws://100.64.0.1",
        "ws://nas.home.arpa",
    ]
    for url in local:
        assert is_local_url(url), url
    assert select_feedback_relays(local, PUBLIC_OWN) == ()
    assert not is_local_url("wss://8.8.8.8")
    assert select_feedback_relays(["wss://8.8.8.8"], PUBLIC_OWN) == ("wss://8.8.8.8",)


def test_local_relays_are_allowed_when_the_nodes_own_relays_are_local() -> None:
    asked = ["ws://127.0.0.1:7778", "ws://127.0.0.1:7777/"]
    # the second is the node's own relay (trailing slash aside): it gets the feedback anyway
    assert select_feedback_relays(asked, LOCAL_OWN) == ("ws://127.0.0.1:7778",)


def test_duplicates_are_sent_once() -> None:
    asked = ["wss://a.example", "WSS://A.example/", "wss://a.example"]
    assert select_feedback_relays(asked, PUBLIC_OWN) == ("wss://a.example",)


@given(st.lists(st.text(max_size=80), max_size=10))
def test_any_list_gives_at_most_the_cap_of_ws_urls(asked: list[str]) -> None:
    chosen = select_feedback_relays(asked, PUBLIC_OWN)
    assert len(chosen) <= MAX_FEEDBACK_RELAYS
    assert all(url.lower().startswith(("ws://", "wss://")) for url in chosen)
    assert not any(is_local_url(url) for url in chosen)
