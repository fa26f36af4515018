"""`make images`: both Dockerfiles built unchanged on the debootstrapped base, and rebuilt only on change."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from support.podrunner.images import build_module


def _inspect(reference: str) -> dict[str, Any]:
    build = build_module()
    out = subprocess.run(
        [
            "podman",
            "--root",
            str(build.STORE),
            "--runroot",
            str(build.RUN_ROOT),
            "--storage-driver",
            "vfs",
            "image",
            "inspect",
            reference,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [inspected] = json.loads(out)
    return dict(inspected)


def test_every_from_is_the_debootstrapped_debian_base(images: dict[str, str]) -> None:
    build = build_module()
    assert build.from_names() == {"debian:12.11-slim"}  # one base, one set of security updates
    base = _inspect(build.qualified("debian:12.11-slim"))
    rootfs = base["Labels"][build.ROOTFS_LABEL]
    assert rootfs.startswith("debian-bookworm-") and (build.CACHE / rootfs).is_file()
    for image_id in images.values():  # the images are built on top of it
        assert _inspect(image_id)["Labels"][build.ROOTFS_LABEL] == rootfs


def test_an_unchanged_image_is_not_rebuilt(images: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    build = build_module()
    for image in build.images().values():
        assert build.build(image) == images[image.tag]
        assert f"build: {image.name} unchanged" in capsys.readouterr().out


def test_the_operator_image_runs_as_its_user_with_debians_python(images: dict[str, str]) -> None:
    from mailrelay.version import OPERATOR_IMAGE

    config = _inspect(images[OPERATOR_IMAGE])["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["mailrelay-operator"]
