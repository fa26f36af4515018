"""The node's builds survive transient failures: a podman step that loses the sealed-memfd race (or apt's
network) is retried with a log line, a Go module download that fails on the network is retried once, and
anything else fails at once. Also: each pinned module is its own cache target."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from controlplane import build as go_build
from node.images import build_module

ROOT = Path(__file__).resolve().parents[2]
MEMFD = (
    'Error: building at STEP "RUN apt-get update": while running runtime: exit status 1\n'
    "Close_Fd sealing memfd copy: Device or resource busy\n"
)


def test_a_podman_step_failing_on_the_memfd_race_is_retried_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    images = build_module()
    answers = [(125, "", MEMFD), (0, "built", "")]
    calls: list[list[str]] = []

    def run(command: list[str], capture: bool) -> tuple[int, str, str]:
        calls.append(command)
        return answers.pop(0)

    monkeypatch.setattr(images, "_run", run)
    monkeypatch.setattr(images.time, "sleep", lambda seconds: None)
    assert images.podman("build", "-t", "x", ".") == "built"
    assert len(calls) == 2
    assert (
        "podman build failed on a transient error, retrying (1/2): Close_Fd sealing memfd copy: Device or resource busy"
    ) in capsys.readouterr().out


def test_a_podman_step_failing_for_its_own_reasons_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    images = build_module()
    calls: list[list[str]] = []

    def run(command: list[str], capture: bool) -> tuple[int, str, str]:
        calls.append(command)
        return 1, "", "E: Unable to locate package postfixx\n"

    monkeypatch.setattr(images, "_run", run)
    with pytest.raises(SystemExit, match="Unable to locate package"):
        images.podman("build", "-t", "x", ".")
    assert len(calls) == 1


def test_the_memfd_race_is_retried_at_most_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    images = build_module()
    calls: list[list[str]] = []

    def run(command: list[str], capture: bool) -> tuple[int, str, str]:
        calls.append(command)
        return 125, "", MEMFD

    monkeypatch.setattr(images, "_run", run)
    monkeypatch.setattr(images.time, "sleep", lambda seconds: None)
    with pytest.raises(SystemExit, match="sealing memfd copy"):
        images.podman("build", "-t", "x", ".")
    assert len(calls) == 3


def test_go_mod_download_failing_on_the_network_is_retried_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    timeout = 'go: github.com/x@v1: Get "https://proxy": dial tcp: i/o timeout'
    answers = [subprocess.CompletedProcess([], 1, "", timeout), subprocess.CompletedProcess([], 0, "", "")]
    calls: list[Any] = []

    def run(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return answers.pop(0)

    monkeypatch.setattr(go_build.subprocess, "run", run)
    monkeypatch.setattr(go_build.time, "sleep", lambda seconds: None)
    go_build._run("go", ["mod", "download"], go_build.HERE / "coredns", {}, retry=True)
    assert len(calls) == 2
    assert "failed on the network, retrying once" in capsys.readouterr().err


def test_every_node_target_has_its_own_cache_key_and_the_kubelet_shares_the_control_planes_pin() -> None:
    keys = {name: go_build.cache_key(name, "go1.26.8") for name in go_build.TARGETS}
    assert len(set(keys.values())) == len(keys)
    assert go_build.TARGETS["kubelet"].folder == go_build.TARGETS["kubernetes"].folder
    assert go_build.pinned_version(go_build.TARGETS["kubelet"]) == "v1.36.3"
    assert set(go_build.GROUPS["node"]) == {"kubelet", "coredns", "registry", "kube-router"}


@pytest.mark.parametrize("name", ["pause", "client", "sink", "coredns"])
def test_the_node_images_dockerfiles_pass_hadolint(name: str) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    dockerfile = ROOT / "image" / "testing" / name / "Dockerfile"
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.node
def test_helm_pushes_the_chart_to_the_local_registry_as_an_oci_artifact(tools: Path, tmp_path: Path) -> None:
    """The registry the node pulls from also takes OCI artifacts: the chart, pushed and pulled back by helm."""
    from node.registry import Registry

    registry = Registry(tmp_path / "registry", data=tmp_path / "storage").start()
    try:
        helm = str(tools / "helm")
        packaged = subprocess.run(
            [helm, "package", str(ROOT / "manifests/helm/mailrelay-operator"), "-d", str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        chart = packaged.strip().rsplit(": ", 1)[-1]
        target = f"oci://{registry.address}/charts-{uuid.uuid4().hex[:8]}"
        (tmp_path / "pulled").mkdir()
        pushed = subprocess.run(
            [helm, "push", chart, target, "--plain-http"], capture_output=True, text=True, check=False
        )
        assert pushed.returncode == 0, pushed.stderr
        assert "Digest: sha256:" in pushed.stdout + pushed.stderr
        pulled = subprocess.run(
            [
                helm,
                "pull",
                f"{target}/mailrelay-operator",
                "--version",
                "0.1.0",
                "--plain-http",
                "-d",
                str(tmp_path / "pulled"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert pulled.returncode == 0, pulled.stderr
    finally:
        registry.stop()
