"""Fixtures every suite may use: a real Kubernetes control plane (`tests/controlplane.py`)."""

from controlplane import control_plane  # noqa: F401 (a fixture, registered by being imported here)
