"""The one place that names released images; the manifests and the chart are tested against it.

MAILRELAY_POSTFIX_IMAGE lets a platform team point every relay at a mirrored image without editing
each MailRelay; the chart and the kustomize base set it to the release's own image.
"""

import os

__version__ = "0.1.0"
POSTFIX_IMAGE_REPOSITORY = "ghcr.io/mailrelay-dev/postfix"
OPERATOR_IMAGE_REPOSITORY = "ghcr.io/mailrelay-dev/mailrelay-operator"
RELEASED_POSTFIX_IMAGE = f"{POSTFIX_IMAGE_REPOSITORY}:{__version__}"
OPERATOR_IMAGE = f"{OPERATOR_IMAGE_REPOSITORY}:{__version__}"
DEFAULT_POSTFIX_IMAGE = os.environ.get("MAILRELAY_POSTFIX_IMAGE") or RELEASED_POSTFIX_IMAGE
