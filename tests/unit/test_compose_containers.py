"""What the compose driver reads of its stack's containers (``docker inspect`` output), and the
lane count it accepts: pure logic, no engine."""

from __future__ import annotations

import pytest

from replica.drivers.compose.agent import MAX_SLOTS
from replica.drivers.compose.docker import StackContainer, stack_containers
from replica.drivers.compose.driver import SLOTS_PER_LANE, ComposeDriver
from replica.errors import ConfigError

NETWORK = "proj_default"


def inspected(service: str, ports: dict, networks: dict, *, id: str = "", network_mode: str = "") -> dict:
    """The parts of one container's ``docker inspect`` entry the driver reads."""
    return {
        "Id": id or f"{service}-id",
        "Config": {"Labels": {"com.docker.compose.project": "proj", "com.docker.compose.service": service}},
        "HostConfig": {"NetworkMode": network_mode or NETWORK},
        "NetworkSettings": {"Ports": ports, "Networks": networks},
    }


def test_services_get_their_network_address_and_loopback_ports() -> None:
    containers = stack_containers(
        [
            inspected(
                "lane-proxy",
                {
                    "8474/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}],
                    "18100/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49154"}],
                    "20000/tcp": None,  # exposed, not published
                    "18101/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49155"}],  # not loopback: not the driver's
                    "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "49156"}],
                },
                {NETWORK: {"IPAddress": "172.20.0.3"}},
            ),
            inspected("postgres", {"5432/tcp": None}, {NETWORK: {"IPAddress": "172.20.0.4"}}),
        ],
        NETWORK,
    )
    assert containers == {
        "lane-proxy": StackContainer("lane-proxy", "172.20.0.3", {8474: 49153, 18100: 49154}),
        "postgres": StackContainer("postgres", "172.20.0.4", {}),
    }


def test_a_service_in_another_containers_network_namespace_has_its_address_and_ports() -> None:
    """``network_mode: service:lanes``: the engine reports no network and no ports of its own."""
    lanes = inspected(
        "lanes", {"8474/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}, {NETWORK: {"IPAddress": "172.20.0.2"}}, id="abc"
    )
    postgres = inspected("postgres", {}, {}, network_mode="container:abc")
    stray = inspected("redis", {}, {}, network_mode="container:elsewhere")  # not a container of the stack
    containers = stack_containers([postgres, lanes, stray], NETWORK)
    assert containers == {
        "lanes": StackContainer("lanes", "172.20.0.2", {8474: 49153}),
        "postgres": StackContainer("postgres", "172.20.0.2", {8474: 49153}),
    }


def test_a_container_off_the_project_network_is_left_out() -> None:
    containers = stack_containers(
        [
            inspected("lanes", {}, {"other_default": {"IPAddress": "172.21.0.2"}}),
            inspected("redis", {}, {NETWORK: {"IPAddress": ""}}),  # stopped: no address
            {"Config": {"Labels": {}}, "NetworkSettings": {"Networks": None, "Ports": None}},
        ],
        NETWORK,
    )
    assert containers == {}


@pytest.mark.parametrize("lanes", [0, MAX_SLOTS // SLOTS_PER_LANE + 1])
def test_a_lane_count_without_slots_for_it_is_refused(lanes: int) -> None:
    with pytest.raises(ConfigError, match=f"1 to {MAX_SLOTS // SLOTS_PER_LANE} lanes"):
        ComposeDriver("never-started", max_parallel_lanes=lanes)
