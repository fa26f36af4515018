"""The relay container's own programs: entrypoint, kubelet probe, preStop drain, log echo, metrics sidecar.

One copy serves both places they run: image/postfix/Dockerfile copies them into the relay image
(as /usr/local/bin/mailrelay-<name>), and they ship in the Python package as data, so local mode
(`mailrelay-operator local`) runs the very same scripts from a plain `pip install`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def command(name: str) -> list[str]:
    """The argv that runs script `name` (e.g. "entrypoint.sh") from the installed package.

    Through its interpreter: an installed wheel does not always keep the executable bit.
    """
    path = Path(str(resources.files(__name__).joinpath(name)))
    interpreter = path.read_text().split("\n", 1)[0].removeprefix("#!").split()
    return [*interpreter, str(path)]


def path(name: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(name)))
