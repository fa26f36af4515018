"""Release tools built from pinned Go modules (cosign, syft, actionlint, and the OCI registry the tests push to).

from gotools.build import ensure       # the path of a tool's binary, built once per pin into the cache
from gotools.registry import Registry  # a registry on loopback for the release tests
"""
