"""Build every image (image/build.py: the product's and the node's) and push them to the local registry.

`python -m node.images` (what `make images` runs) pushes through a registry started for the purpose on
loopback; a node pushes through its own registry before it starts. An image is pushed again only when its
id changed since the last push to this cache's registry (a marker per name records the id).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from .registry import Registry, repository, storage

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_IMAGE = "registry.mailrelay.test/testing/pause:dev"


@cache
def build_module() -> ModuleType:
    """image/build.py, loaded once per process (it is a script, not a package): also the tests' (podrunner)."""
    spec = importlib.util.spec_from_file_location("mailrelay_image_build", ROOT / "image" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def build_each(images: Iterable[Any]) -> dict[str, str]:
    """Image name (as manifests and the node use it) -> id of the image built from this checkout, for each of
    image/build.py's `Image`s (what did not change is not rebuilt)."""
    build = build_module()
    build.import_base()
    return {image.tag: build.build(image) for image in images}


def build_all() -> dict[str, str]:
    """Every image: the product's and the node's."""
    return build_each(build_module().all_images().values())


def namespace(built: dict[str, str]) -> str:
    """The registry path a node pulls this set of images from. The registry's storage is shared by every
    run on the machine, and the images keep their release names (`ghcr.io/mailrelay-dev/postfix:<version>`), so
    under one path a run of another checkout would push over this one's images, and its node pull them."""
    digest = hashlib.sha256(json.dumps(sorted(built.items())).encode()).hexdigest()[:12]
    return f"build-{digest}"


def push(built: dict[str, str], registry: Registry) -> str:
    """Push the images under their set's namespace (what is there already is skipped); return it."""
    build = build_module()
    prefix = namespace(built)
    markers = storage().parent / "registry-pushed"
    markers.mkdir(parents=True, exist_ok=True)
    for name, image_id in built.items():
        target = f"{prefix}/{repository(name)}"
        marker = markers / re.sub(r"[^A-Za-z0-9._-]", "_", target)
        if marker.is_file() and marker.read_text() == image_id and registry.has(target):
            continue
        build.podman("push", "--tls-verify=false", "--quiet", image_id, f"docker://{registry.address}/{target}")
        marker.write_text(image_id)
        print(f"images: pushed {name} ({image_id[:12]}) to the local registry as {target}", file=sys.stderr, flush=True)
    return prefix


def publish(registry: Registry | None = None) -> tuple[dict[str, str], str]:
    """Build what changed and push it; with no registry given, through one on loopback for the purpose.
    Returns the images (name -> id) and the registry namespace they are under."""
    built = build_all()
    if registry is not None:
        return built, push(built, registry)
    with tempfile.TemporaryDirectory(prefix="mailrelay-registry-") as folder:
        own = Registry(Path(folder), data=storage()).start()
        try:
            prefix = push(built, own)
        finally:
            own.stop()
    return built, prefix


def main() -> int:
    try:
        publish()
    except subprocess.CalledProcessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"images: all in {storage()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
