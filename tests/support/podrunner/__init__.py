"""Run a rendered Deployment's pod under runc with what the kubelet and containerd would give it.

`images` builds the images from image/*/Dockerfile and exports their root filesystems, `volumes`
lays out the pod's volumes as the kubelet does, `oci` turns the pod spec into a runtime config,
and `pod` runs every container of the pod in its own network namespace with its probes and its
stop sequence (`container`: one of them).
"""

from support.podrunner.network import PodNetwork
from support.podrunner.pod import Pod, wait_until

__all__ = ["Pod", "PodNetwork", "wait_until"]
