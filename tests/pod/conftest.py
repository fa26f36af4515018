"""The release tests' session fixtures: `published` (`make release` of this tree on a registry on loopback)
and `previous` (the newest release in RELEASES, built from its commit into the same registry)."""

from support.released import previous, published

__all__ = ["previous", "published"]
