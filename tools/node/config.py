"""The node's configuration files: containerd (and its registry mirrors), CNI, the kubelet and kube-proxy.

Every setting that this sandbox needs, rather than a cluster's default, says why beside it; docs/node.md
lists them together. The machine: root without CAP_SYS_RESOURCE, a hybrid cgroup v1 hierarchy (v1
controllers mounted and writable), no AppArmor, no swap accounting, shared with other runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .network import Slot

CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
CNI_BIN = "/usr/lib/cni"  # Debian's containernetworking-plugins
RUNC = "/usr/sbin/runc"  # Debian's runc
# Upstream registries whose images the node pulls from the local registry instead: the release images
# (ghcr.io/mailrelay-dev/..., the names in operator/mailrelay/version.py) and the test images built here.
MIRRORED = ("ghcr.io", "registry.mailrelay.test")


def containerd_toml(slot: Slot, data: Path, sandbox_image: str) -> str:
    run = slot.run_dir
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{data}/containerd"
state = "{run}/containerd"
# Only the native snapshotter is used; the others would probe their kernel features at start.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.overlayfs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{run}/containerd.sock"

[ttrpc]
  address = "{run}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{data}/opt"

[{cri}]
  sandbox_image = "{sandbox_image}"
  # No CAP_SYS_RESOURCE here: containerd would ask runc for oom_score_adj -998 for every sandbox, which
  # only a process with that capability may set, and runc fails ("can't get final child's PID from pipe").
  # Restricted, a container's oom_score_adj is never set below containerd's own.
  restrict_oom_score_adj = true
  # Pod network namespaces under this node's state folder, not /run/netns shared with the machine.
  netns_mounts_under_state_dir = true
  # This kernel has no AppArmor (no /sys/module/apparmor).
  disable_apparmor = true
  # Streams for exec, attach and logs: inside the node's namespace, proxied by the kubelet.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [{cri}.containerd]
    # overlayfs inside this sandbox's storage is not assumed; native copies each layer (slower, always works).
    snapshotter = "native"
    default_runtime_name = "runc"

    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{run}/runc"
        # cgroupfs, as the kubelet's cgroupDriver: no systemd is PID 1 here.
        SystemdCgroup = false

  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{data}/cni/net.d"

  [{cri}.registry]
    config_path = "{data}/certs.d"
"""


def hosts_toml(upstream: str, mirror: str) -> str:
    """containerd's mirror for one upstream registry: pulls go to the local registry (plain HTTP, on the
    host's end of the node's veth), and never to the upstream itself (no fallback server is listed).
    `mirror` is `address/namespace`, the registry path this run's images were pushed under
    (node/images.py): with override_path, containerd asks `/v2/<namespace>/<repository>/...`."""
    address, namespace = mirror.split("/", 1)
    url = f"http://{address}/v2/{namespace}"
    return f"""server = "{url}"
override_path = true

[host."{url}"]
  capabilities = ["pull", "resolve"]
  override_path = true
"""


def write_registry_mirrors(folder: Path, mirror: str) -> None:
    for upstream in MIRRORED:
        (folder / upstream).mkdir(parents=True, exist_ok=True)
        (folder / upstream / "hosts.toml").write_text(hosts_toml(upstream, mirror))


def cni_conflist(slot: Slot, data: Path) -> str:
    """bridge + host-local + portmap (containerd adds loopback itself); the bridge and range are the slot's."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "mailrelay-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": slot.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": slot.pod_cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(data / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def kubelet_config(slot: Slot, data: Path, ca: Path) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Serve on the node's own address inside its namespace; the apiserver reaches it as InternalIP.
        "address": slot.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{slot.run_dir}/containerd.sock",
        # No systemd as PID 1: cgroups are written directly, as containerd's runc does (SystemdCgroup false).
        "cgroupDriver": "cgroupfs",
        # The machine mounts cgroup v1 controllers (hybrid); 1.31+ refuse v1 unless told otherwise.
        "failCgroupV1": False,
        # Pods get the kubelet's QoS hierarchy (kubepods/{burstable,besteffort}/pod<uid>) under this node's
        # own cgroup in each hierarchy, so runs sharing the machine never meet and a crashed run's containers
        # are found and killed by the next owner of the slot. Without cgroupsPerQOS, containerd would put
        # every container under /k8s.io, shared by all nodes on the machine.
        "cgroupsPerQOS": True,
        "cgroupRoot": f"/{slot.cgroup}",
        # Nothing is reserved or enforced for the node itself: it shares the machine with whatever else runs.
        "enforceNodeAllocatable": [],
        # The machine's swap is not the node's to manage.
        "failSwapOn": False,
        # The native snapshotter reports no image filesystem usage, so ephemeral-storage accounting cannot work.
        "localStorageCapacityIsolation": False,
        # Lowering its own oom_score_adj (-999 by default) needs CAP_SYS_RESOURCE, which this sandbox lacks.
        "oomScoreAdj": 0,
        # No systemd inhibitor locks (no D-Bus): graceful node shutdown stays off.
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": CLUSTER_DOMAIN,
        # Pods must not inherit this machine's resolvers or search domains (no traffic leaves the node).
        "resolvConf": str(data / "resolv.conf"),
        # Everything the kubelet writes stays under this node's folders (defaults are machine-wide paths).
        "podLogsDir": str(data / "pod-logs"),
        "volumePluginDir": str(data / "volume-plugins"),
        "staticPodPath": "",
        "serializeImagePulls": False,
        "rotateCertificates": False,
        # Disk pressure on a shared machine is not the node's business; the eviction manager keeps running.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_config(slot: Slot, kubeconfig: Path, node_name: str) -> str:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "hostnameOverride": node_name,
        "clusterCIDR": slot.pod_cidr,
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Leave the kernel's conntrack table size and timeouts alone: they are machine-wide (hashsize is a
        # module parameter) or need privileges this sandbox lacks.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
        # NodePorts on 127.0.0.1 would set route_localnet; nothing here uses them. NodePorts on the node's
        # InternalIP only, as kube-proxy recommends.
        "iptables": {"localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "0s"},
        "nodePortAddresses": ["primary"],
        "oomScoreAdj": 0,  # as the kubelet: no CAP_SYS_RESOURCE to lower it
    }
    return yaml.safe_dump(config, sort_keys=False)
