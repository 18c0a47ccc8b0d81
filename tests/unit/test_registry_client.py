"""The registry client's handling of a registry still replaying its KafkaSQL journal."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from headwater.contracts.model import Compatibility
from headwater.contracts.registry import RegistryClient, RegistryError


class _Answers(requests.Session):
    """A session that answers each request with the next of `statuses` and records what was asked."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__()
        self.statuses = statuses
        self.asked: list[tuple[str, str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.asked.append((str(method), str(url), kwargs.get("json")))
        response = requests.Response()
        response.status_code = self.statuses.pop(0)
        message = "A rule named 'COMPATIBILITY' already exists." if response.status_code == 409 else "ok"
        response._content = json.dumps({"message": message}).encode()
        return response


def test_a_conflict_while_the_registry_catches_up_is_retried_until_the_rule_is_set() -> None:
    session = _Answers([409, 409, 200])
    client = RegistryClient("http://127.0.0.1:1", session=session)
    client.set_compatibility("agents.signals.v1-value", Compatibility("BACKWARD"), settle_s=5)
    assert [m for m, _, _ in session.asked] == ["PUT", "PUT", "PUT"]
    assert all(body == {"compatibility": "BACKWARD"} for _, _, body in session.asked)


def test_a_conflict_that_does_not_settle_is_an_error_naming_the_answer() -> None:
    session = _Answers([409] * 20)
    client = RegistryClient("http://127.0.0.1:1", session=session)
    with pytest.raises(RegistryError, match=r"kept answering HTTP 409 for 1s: .*already exists"):
        client.set_compatibility("agents.signals.v1-value", Compatibility("BACKWARD"), settle_s=1)
