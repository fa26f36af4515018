"""hack/oci.py: single-platform OCI layouts merged into one image index, pushed by skopeo to a real registry
with every digest kept. Small hand-made layouts for two platforms, so the multi-platform path is tested
on any machine (the release tests build this machine's platform only)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

import oci
from node.registry import Registry

pytestmark = pytest.mark.release


def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def layout(folder: Path, architecture: str, variant: str | None = None) -> Path:
    """A one-image OCI layout whose only layer holds a file naming its architecture."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w:gz") as tar:
        content = f"built for {architecture}\n".encode()
        info = tarfile.TarInfo("etc/arch")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    config = {"architecture": architecture, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    if variant:
        config["variant"] = variant
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_blob(folder, json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(folder, layer.getvalue())}],
    }
    written = _blob(folder, json.dumps(manifest).encode())
    entry = {"mediaType": manifest["mediaType"], **written, "annotations": {oci.REF_NAME: "latest"}}
    (folder / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return folder


def test_layouts_merge_into_one_index_that_names_each_platform(tmp_path: Path) -> None:
    amd64, arm64 = layout(tmp_path / "amd64", "amd64"), layout(tmp_path / "arm64", "arm64", "v8")
    merged = oci.merge([amd64, arm64], tmp_path / "merged", "1.2.3", {"org.opencontainers.image.version": "1.2.3"})
    assert set(merged.platforms) == {"linux/amd64", "linux/arm64/v8"}
    [top] = json.loads((merged.layout / "index.json").read_text())["manifests"]
    assert (top["digest"], top["annotations"][oci.REF_NAME], top["mediaType"]) == (merged.digest, "1.2.3", oci.INDEX)
    index_bytes = (merged.layout / "blobs" / "sha256" / merged.digest.removeprefix("sha256:")).read_bytes()
    assert "sha256:" + hashlib.sha256(index_bytes).hexdigest() == merged.digest
    index = json.loads(index_bytes)
    assert index["annotations"] == {"org.opencontainers.image.version": "1.2.3"}
    assert {m["digest"]: m["platform"] for m in index["manifests"]} == {
        merged.platforms["linux/amd64"]: {"architecture": "amd64", "os": "linux"},
        merged.platforms["linux/arm64/v8"]: {"architecture": "arm64", "os": "linux", "variant": "v8"},
    }
    for source in (amd64, arm64):  # every blob of every platform is there
        assert {p.name for p in (source / "blobs" / "sha256").iterdir()} <= {
            p.name for p in (merged.layout / "blobs" / "sha256").iterdir()
        }


def test_two_layouts_of_one_platform_are_refused(tmp_path: Path) -> None:
    first, second = layout(tmp_path / "a", "amd64"), layout(tmp_path / "b", "amd64")
    with pytest.raises(ValueError, match="two layouts for linux/amd64"):
        oci.merge([first, second], tmp_path / "merged", "1.2.3", {})


def test_skopeo_pushes_the_index_with_every_digest_kept(tmp_path: Path) -> None:
    if not shutil.which("skopeo"):
        pytest.fail("skopeo is missing: `make release-deps` installs it")
    merged = oci.merge(
        [layout(tmp_path / "amd64", "amd64"), layout(tmp_path / "arm64", "arm64", "v8")],
        tmp_path / "merged",
        "1.2.3",
        {},
    )
    with Registry(tmp_path / "registry") as registry:
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
                f"oci:{merged.layout}:1.2.3",
                f"docker://{registry.address}/test/image:1.2.3",
            ],
            check=True,
            capture_output=True,
        )
        media_type, index = registry.manifest("test/image", "1.2.3")
        pushed = registry.manifest("test/image", merged.digest)[1]
        assert media_type == oci.INDEX and index == pushed
        assert {m["digest"] for m in index["manifests"]} == set(merged.platforms.values())
        for digest in merged.platforms.values():
            assert registry.manifest("test/image", digest)[0] == "application/vnd.oci.image.manifest.v1+json"
