"""The product's images, built by image/build.py, and their root filesystems for runc."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from support.paths import ROOT


@cache
def build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mailrelay_image_build", ROOT / "image" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@cache
def built_images() -> dict[str, str]:
    """Image name as the manifests use it → id of the image built from this checkout."""
    build = build_module()
    build.import_base()
    return {image.tag: build.build(image) for image in build.images().values()}


def _podman(*args: str) -> str:
    build = build_module()
    command = ["podman", "--root", str(build.STORE), "--runroot", str(build.RUN_ROOT), "--storage-driver", "vfs", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def image_config(image_id: str) -> dict[str, Any]:
    """The OCI image config: Entrypoint, Cmd, Env, User, WorkingDir."""
    [inspected] = json.loads(_podman("image", "inspect", image_id))
    config: dict[str, Any] = inspected.get("Config") or {}
    return config


def rootfs(image_id: str) -> Path:
    """The image's files, copied once per image id (setuid/setgid bits and owners kept)."""
    target = build_module().CACHE / "rootfs" / image_id
    if target.exists():
        return target
    partial = target.with_name(f"{image_id}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    mounted = _podman("image", "mount", image_id)
    try:
        subprocess.run(["cp", "-a", f"{mounted}/.", str(partial)], check=True)
    finally:
        _podman("image", "unmount", image_id)
    partial.rename(target)
    known = set(_podman("images", "--quiet", "--no-trunc").replace("sha256:", "").split())
    for old in target.parent.iterdir():  # copies of images the store has pruned
        if old.name not in known and not old.name.endswith(".partial"):
            shutil.rmtree(old, ignore_errors=True)
    return target
