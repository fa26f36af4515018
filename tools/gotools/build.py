"""Build the release tools from pinned Go modules, once per pin, into the cache folder outside the repo.

    python tools/gotools/build.py [registry|cosign|syft|actionlint ...]   # prints each binary's path

Each tool's folder (cosign/, syft/, actionlint/ beside this file) pins every version through its go.mod
and go.sum. A tool is cached in `<MAILRELAY_CACHE_DIR>/<tool>-<hash>`, the hash taken over those files,
the Go version and the recipe, so a changed pin rebuilds that tool only and an unchanged one builds
nothing. The recipe is tools/controlplane/build.py's (CGO off, -trimpath, stripped, GOTOOLCHAIN=local,
the module proxy's error explained), whose helpers this uses; each binary reports its pinned version.
`go build` fetches only the modules its packages need (cosign's and syft's full graphs are twice that).
The OCI registry is the real node's (tools/controlplane/registry): tools/controlplane/build.py builds
and caches it, version-stamped, and `ensure("registry")` returns that binary.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: the tools folder holds controlplane
    sys.path.insert(0, str(HERE.parent))

from controlplane.build import (  # noqa: E402
    BuildError,
    _go_version,
    _run,
    build_once,
    cache_root,
    ensure_binaries,
    find_go,
    go_env,
    print_paths,
    required_version,
    staged,
)

RECIPE = ("-trimpath", "-ldflags=-s -w", "CGO_ENABLED=0", "version stamped")


@dataclass(frozen=True)
class Tool:
    """One command built from one pinned module folder."""

    folder: Path
    module: str  # the module whose pinned version the binary reports
    package: str
    version_flag: str  # the -X variable the upstream release stamps ("" when it reads its build info)


# The OCI registry is the node's too: tools/controlplane/build.py builds it (target "registry"), once.
SHARED = ("registry",)
TOOLS: dict[str, Tool] = {
    "cosign": Tool(
        HERE / "cosign",
        "github.com/sigstore/cosign/v3",
        "github.com/sigstore/cosign/v3/cmd/cosign",
        "sigs.k8s.io/release-utils/version.gitVersion",
    ),
    "syft": Tool(HERE / "syft", "github.com/anchore/syft", "github.com/anchore/syft/cmd/syft", "main.version"),
    "actionlint": Tool(
        HERE / "actionlint",
        "github.com/rhysd/actionlint",
        "github.com/rhysd/actionlint/cmd/actionlint",
        "github.com/rhysd/actionlint.version",
    ),
}


def pinned_version(tool: Tool) -> str:
    """The version go.mod requires (no Go needed)."""
    return required_version(tool.folder, tool.module, str(tool.folder))


def cache_key(name: str, go_version: str) -> str:
    tool = TOOLS[name]
    digest = hashlib.sha256(go_version.encode())
    for path in (tool.folder / "go.mod", tool.folder / "go.sum", *sorted(tool.folder.glob("*.go"))):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(repr((tool.module, tool.package, tool.version_flag, RECIPE)).encode())
    return digest.hexdigest()[:16]


def ensure(name: str, log: bool = True) -> Path:
    """The path of the tool's binary, built first if this pin has not been built on this machine."""
    if name in SHARED:
        return Path(ensure_binaries(log=log, group=name).path(name))
    if name not in TOOLS:
        raise BuildError(f"unknown tool {name}; known: {', '.join((*SHARED, *TOOLS))}")
    go = find_go()
    folder = cache_root() / f"{name}-{cache_key(name, _go_version(go))}"
    binary = folder / "bin" / name
    build_once(folder, binary.is_file, lambda: _build(go, name, folder, log))
    return binary


def _build(go: str, name: str, folder: Path, log: bool) -> None:
    tool = TOOLS[name]
    version = pinned_version(tool)
    started = time.monotonic()
    if log:
        print(f"build: {name} {version} (first time only, minutes)", file=sys.stderr, flush=True)
    with staged(folder, tool.module, version, go) as staging:
        ldflags = f"-s -w -X {tool.version_flag}={version}"
        output = str(staging / "bin" / name)
        _run(go, ["build", "-trimpath", f"-ldflags={ldflags}", "-o", output, tool.package], tool.folder, go_env())
    if log:
        print(f"build: {name} built in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    return print_paths(ensure(name) for name in argv or [*SHARED, *TOOLS])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
