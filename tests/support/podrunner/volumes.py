"""A pod's volumes as the kubelet lays them out on the node.

- emptyDir: a directory with mode 0777 (deliberate upstream behaviour, whatever the image expects);
  `medium: Memory` is a tmpfs of `sizeLimit` bytes, also 0777.
- configMap and secret: the atomic writer's layout, `..<timestamp>/` holding the files with
  `defaultMode` (0644 unless set), `..data` pointing at it and one symlink per key; secrets live on
  a tmpfs, and both are always mounted read-only, whatever the volumeMount says. `items` projects
  only the keys it names, at their paths; an `optional` source that does not exist gives an empty volume.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def quantity_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)([kMG]i?|Ki)?", quantity)
    if not match:
        raise ValueError(f"unsupported quantity {quantity!r}")
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


@dataclass
class HostVolume:
    path: Path
    always_read_only: bool  # configMap and secret volumes


class Volumes:
    """Creates every volume of a pod spec under `base`; `teardown` unmounts the tmpfs ones."""

    def __init__(
        self,
        base: Path,
        pod_spec: dict[str, Any],
        config_maps: dict[str, dict[str, str]],
        secrets: dict[str, dict[str, str]],
    ) -> None:
        self.base = base
        self.pod_spec = pod_spec
        self.config_maps = config_maps
        self.secrets = secrets
        self.tmpfs: list[Path] = []

    def setup(self) -> dict[str, HostVolume]:
        made: dict[str, HostVolume] = {}
        for volume in self.pod_spec.get("volumes", []):
            path = self.base / volume["name"]
            path.mkdir(parents=True)
            if "emptyDir" in volume:
                limit = volume["emptyDir"].get("sizeLimit")
                if volume["emptyDir"].get("medium") == "Memory":
                    self._mount_tmpfs(path, quantity_bytes(limit) if limit else None)
                path.chmod(0o777)
                made[volume["name"]] = HostVolume(path, False)
            elif "configMap" in volume:
                source = volume["configMap"]
                data = self._lookup(self.config_maps, source["name"], "ConfigMap", source)
                path.chmod(0o777)
                self._write_atomic(path, data, source.get("defaultMode", 0o644))
                made[volume["name"]] = HostVolume(path, True)
            elif "secret" in volume:
                source = volume["secret"]
                data = self._lookup(self.secrets, source["secretName"], "Secret", source)
                self._mount_tmpfs(path, None)
                path.chmod(0o1777)
                self._write_atomic(path, data, source.get("defaultMode", 0o644))
                made[volume["name"]] = HostVolume(path, True)
            else:
                raise ValueError(f"volume type not supported by the pod runner: {volume}")
        return made

    @staticmethod
    def _lookup(store: dict[str, dict[str, str]], name: str, kind: str, source: dict[str, Any]) -> dict[str, str]:
        if name not in store:
            if source.get("optional"):
                return {}
            raise LookupError(f"{kind} {name!r} does not exist: the kubelet would keep the pod pending")
        data = store[name]
        items = source.get("items")
        if not items:
            return data
        missing = [item["key"] for item in items if item["key"] not in data]
        if missing and not source.get("optional"):
            raise LookupError(f"{kind} {name!r} has no key {missing}: the kubelet would keep the pod pending")
        if any(item.get("mode") is not None or "/" in item["path"] for item in items):
            raise ValueError(f"{kind} volume item modes and nested paths are not supported by the pod runner")
        return {item["path"]: data[item["key"]] for item in items if item["key"] in data}

    def _mount_tmpfs(self, path: Path, size: int | None) -> None:
        options = "nosuid,nodev" + (f",size={size}" if size else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
        self.tmpfs.append(path)

    @staticmethod
    def _write_atomic(path: Path, data: dict[str, str], mode: int) -> None:
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + str(time.time_ns() % 10**9)
        folder = path / stamp
        folder.mkdir()
        folder.chmod(0o755)
        for key, value in data.items():
            (folder / key).write_text(value)
            (folder / key).chmod(mode)
        (path / "..data").symlink_to(stamp)
        for key in data:
            (path / key).symlink_to(f"..data/{key}")

    def teardown(self) -> None:
        for path in reversed(self.tmpfs):
            subprocess.run(["umount", str(path)], check=False, capture_output=True)
        self.tmpfs.clear()
