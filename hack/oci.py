"""One multi-platform image from single-platform OCI layouts: the blobs together, an image index over them.

image/build.py exports each platform's build as an OCI layout; the release merges them into one layout
whose index names each manifest's platform (from its image config), and `skopeo copy --all
--preserve-digests` pushes that index unchanged, so every digest is known before the push.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Merged:
    layout: Path
    tag: str
    digest: str  # the image index
    platforms: dict[str, str]  # os/arch[/variant] → that platform's manifest digest


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


def _json(layout: Path, digest: str) -> Any:
    return json.loads(_blob(layout, digest).read_bytes())


def _write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = _blob(layout, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def single_manifest(layout: Path) -> dict[str, Any]:
    """The one manifest descriptor of a single-image layout."""
    manifests = json.loads((layout / "index.json").read_text())["manifests"]
    if len(manifests) != 1:
        raise ValueError(f"{layout} holds {len(manifests)} manifests, not one")
    descriptor: dict[str, Any] = manifests[0]
    return descriptor


def platform_of(layout: Path, descriptor: dict[str, Any]) -> dict[str, str]:
    config = _json(layout, _json(layout, descriptor["digest"])["config"]["digest"])
    found = {"architecture": config["architecture"], "os": config["os"]}
    if config.get("variant"):
        found["variant"] = config["variant"]
    return found


def merge(layouts: list[Path], target: Path, tag: str, annotations: dict[str, str]) -> Merged:
    """A layout at `target` whose `tag` is an image index over the single-platform `layouts`."""
    shutil.rmtree(target, ignore_errors=True)
    (target / "blobs" / "sha256").mkdir(parents=True)
    (target / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    entries, platforms = [], {}
    for layout in layouts:
        descriptor = single_manifest(layout)
        platform = platform_of(layout, descriptor)
        name = "/".join(platform[k] for k in ("os", "architecture", "variant") if k in platform)
        if name in platforms:
            raise ValueError(f"two layouts for {name}")
        platforms[name] = descriptor["digest"]
        for blob in (layout / "blobs" / "sha256").iterdir():
            copy = target / "blobs" / "sha256" / blob.name
            if not copy.exists():
                try:
                    os.link(blob, copy)  # content-addressed: the same bytes under the same name
                except OSError:
                    shutil.copyfile(blob, copy)
        entry = {k: descriptor[k] for k in ("mediaType", "digest", "size")}
        entries.append({**entry, "platform": platform})
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries, "annotations": annotations}
    written = _write_blob(target, json.dumps(index, indent=2, sort_keys=True).encode())
    top = {"schemaVersion": 2, "manifests": [{"mediaType": INDEX, **written, "annotations": {REF_NAME: tag}}]}
    (target / "index.json").write_text(json.dumps(top, indent=2))
    return Merged(target, tag, written["digest"], platforms)
