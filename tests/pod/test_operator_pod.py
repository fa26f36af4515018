"""The operator image, built from image/operator/Dockerfile, run under runc as the shipped Deployment says, with
its command or arguments swapped as `kubectl debug` would. The operator as a pod reconciling relays, its user,
read-only root and metrics are tested on the real node (tests/node)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from support.paths import ROOT
from support.podrunner import Pod, PodNetwork

OPERATOR_NS = "mailrelay-system"


def shipped_deployment() -> dict[str, Any]:
    return next(
        d
        for d in yaml.safe_load_all((ROOT / "manifests/base/deployment.yaml").read_text())
        if d["kind"] == "Deployment"
    )


@pytest.fixture
def networks() -> Iterator[Callable[[], PodNetwork]]:
    made: list[PodNetwork] = []

    def make() -> PodNetwork:
        made.append(PodNetwork().create())
        return made[-1]

    yield make
    for network in made:
        network.delete()


def test_operator_image_runs_as_its_non_root_user_with_a_read_only_root(
    images: dict[str, str], networks: Callable[[], PodNetwork]
) -> None:
    """The shipped pod, with the container's args or command swapped as `kubectl debug` would."""
    runs: list[tuple[dict[str, Any], int, str]] = [
        ({"args": ["--help"]}, 0, "usage: mailrelay-operator"),
        ({}, 1, "no cluster to talk to"),  # unchanged, without a service account: a clear message
        (
            {"command": ["python3", "-c", "import os; print(os.getuid(), os.getgid()); open('/x', 'w')"]},
            1,
            "10001 10001",
        ),
    ]
    for override, status, text in runs:
        pod = Pod(shipped_deployment(), config_maps={}, network=networks())
        try:
            result = pod.run_once(**override)
        finally:
            pod.stop()
        assert result.returncode == status and text in result.stdout + result.stderr, result.stderr
        assert "Traceback" not in result.stderr or "Read-only file system" in result.stderr
