"""The local online store's Redis: Debian's redis-server as this user, password required, data kept."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from redis import Redis as RedisConnection
from redis.exceptions import AuthenticationError, ResponseError

from headwater.local.ports import free_port
from headwater.local.process import quiet
from headwater.local.redis import LocalRedis


def test_redis_needs_its_password_and_keeps_its_data_across_a_crash(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path, free_port(), progress=quiet).start()
    try:
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(server.config_file.stat().st_mode) == 0o600
        assert server.password not in " ".join(server._process.argv if server._process else [])
        anonymous = RedisConnection(host=server.host, port=server.port)
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            anonymous.ping()
        with pytest.raises((AuthenticationError, ResponseError)):
            RedisConnection(host=server.host, port=server.port, password="wrong").ping()
        client = RedisConnection(host=server.host, port=server.port, password=server.password)
        client.hset("entity", mapping={"window": "1"})
        server.kill()
        assert not server.running()
        server.start()
        client = RedisConnection(host=server.host, port=server.port, password=server.password)
        assert client.hgetall("entity") == {b"window": b"1"}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
    finally:
        server.stop()
