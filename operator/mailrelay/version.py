"""The one place that names released images; the manifests and the chart are tested against it.

A platform team points every relay at a mirrored image with MAILRELAY_POSTFIX_IMAGE (read once, by
mailrelay.controller.settings); the chart and the kustomize base set it to the release's own image.
"""

__version__ = "0.1.0"
POSTFIX_IMAGE_REPOSITORY = "ghcr.io/mailrelay-dev/postfix"
OPERATOR_IMAGE_REPOSITORY = "ghcr.io/mailrelay-dev/mailrelay-operator"
RELEASED_POSTFIX_IMAGE = f"{POSTFIX_IMAGE_REPOSITORY}:{__version__}"
OPERATOR_IMAGE = f"{OPERATOR_IMAGE_REPOSITORY}:{__version__}"
