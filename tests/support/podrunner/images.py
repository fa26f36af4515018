"""The product's images, built by image/build.py, and their root filesystems for runc."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from node.images import build_each, build_module


@cache
def built_images() -> dict[str, str]:
    """Image name as the manifests use it → id of the image built from this checkout."""
    return build_each(build_module().images().values())


# Images pulled from a registry (a release's) by reference, beside those built from this checkout.
_PULLED: dict[str, str] = {}


def image_of(reference: str) -> str:
    """The id of the image a pod spec names: pulled for a test, or built from this checkout."""
    return _PULLED.get(reference) or built_images()[reference]


def pull(reference: str, authfile: Path | None = None) -> str:
    """Pull an image from a registry on loopback into the build store (the host's platform of an index)."""
    login = ["--authfile", str(authfile)] if authfile else []
    _PULLED[reference] = _podman("pull", "--quiet", "--tls-verify=false", *login, reference)
    return _PULLED[reference]


def forget(reference: str) -> None:
    """Drop a pulled image's name (and the image, unless a build of this checkout still names it)."""
    if _PULLED.pop(reference, None):
        _podman("rmi", reference)


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
