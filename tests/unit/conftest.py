"""Fixtures for the component tests."""

from __future__ import annotations

import pytest

from components.testing import RecordingMocks


@pytest.fixture
def mocks() -> RecordingMocks:
    """Fresh recording Pulumi mocks for one test."""
    return RecordingMocks.install()
