"""mailrelay-operator: a closed, sender-rewriting Postfix relay for every Kubernetes namespace."""

from mailrelay.version import __version__

__all__ = ["__version__"]
