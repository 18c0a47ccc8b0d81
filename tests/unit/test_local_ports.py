"""Port probing of the local platform: pick free ports, tell a taken one, see what listens."""

from __future__ import annotations

import socket

from headwater.local.ports import HOST, free_ports, listening, port_free


def test_a_taken_port_is_neither_free_nor_silent() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind((HOST, 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_free(port)
        assert listening(port)
    assert port_free(port)
    assert not listening(port)


def test_free_ports_differ() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(port_free(p) for p in ports)
