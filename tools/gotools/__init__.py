"""Release tools built from pinned Go modules (cosign, syft, actionlint, and the OCI registry the tests push to).

from gotools.build import ensure       # the path of a tool's binary, built once per pin into the cache
from node.registry import Registry     # the registry itself: the node's, on loopback for the release tests
"""
