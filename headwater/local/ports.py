"""TCP ports of the local platform on 127.0.0.1: pick free ones, check a wanted one, see what listens."""

from __future__ import annotations

import errno
import socket

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` different ports nobody listens on right now (all held open until every one is picked)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A port nobody listens on right now."""
    (port,) = free_ports(1)
    return port


def port_free(port: int) -> bool:
    """Can a server bind `port`? As the JVMs bind (SO_REUSEADDR): a port in TIME_WAIT after the last run is
    free. Errors other than "in use" (a port below 1024 without the right) are raised, not hidden."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
    return True


def listening(port: int) -> bool:
    """Does something accept connections on `port`?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0
