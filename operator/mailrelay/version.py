"""The one place that names released images; manifests and the chart are checked against it."""

__version__ = "0.1.0"
POSTFIX_IMAGE_REPOSITORY = "ghcr.io/mailrelay-dev/postfix"
OPERATOR_IMAGE_REPOSITORY = "ghcr.io/mailrelay-dev/mailrelay-operator"
DEFAULT_POSTFIX_IMAGE = f"{POSTFIX_IMAGE_REPOSITORY}:{__version__}"
OPERATOR_IMAGE = f"{OPERATOR_IMAGE_REPOSITORY}:{__version__}"
