"""The API server tier: the HA replicas' backend, the real control plane."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.ha import Backend, ControlPlaneBackend


@pytest.fixture
def backend(control_plane: Any) -> Iterator[Backend]:
    yield ControlPlaneBackend(control_plane)
