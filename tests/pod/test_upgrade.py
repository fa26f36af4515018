"""An operator upgrade as a platform team does it, on the real control plane (kwok's nodes): the previous
release (the newest in RELEASES, built from its commit) installed with `helm install oci://` from the
local registry, its operator image pulled from there and run as the chart's Deployment says; relays made;
then the README's upgrade (the new chart's CRD applied server-side, `helm upgrade`) to the current tree,
released as the next version, with `maxRollingRelays: 1`: the two relays whose pods the new version
renders anew roll one after the other. Then `helm uninstall` and a reinstall, and the documented downgrade.

Not here yet: mail on a real node.
"""

from __future__ import annotations

import difflib
import itertools
import json
import subprocess
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.kstatus import kstatus
from support.podrunner import PodNetwork, images
from support.podrunner.operator import OperatorPod
from support.releasekit import offline
from support.shipped_operator import established
from support.wait import eventually

pytestmark = pytest.mark.release

RELEASE = "mailrelay"  # as the README names it
SYSTEM = "mailrelay-upgrade"  # the release's namespace
# Each relay in a namespace of its own (a relay's Service is `mail`), the only ones the operator serves
# (watchNamespaces): other tests' relays stay theirs. `pinned` names its Postfix image in its spec.
NAMESPACES = {"relay": "upgrade-apps", "second": "upgrade-second", "pinned": "upgrade-pinned"}
# The relays the upgrade must roll (their default Postfix image's tag changes): more than its limit.
# `pinned` rolls too when the new version renders its pod otherwise (a new default, a config line).
ROLLING = ["relay", "second"]
LIMIT = 1
CRD = "customresourcedefinitions/mailrelays.mailrelay.dev"


class Installed:
    """The chart from the local registry on the control plane, and the operator pod its Deployment runs."""

    def __init__(self, plane: Any, published: Any, tools: Path, folder: Path) -> None:
        self.plane, self.published, self.folder = plane, published, folder
        self.helm_binary = str(tools / "helm")
        self.env = {**offline(published.env), "KUBECONFIG": str(plane.kubeconfig)}
        self.chart = published.summary["chart"]["reference"]
        self.operator: OperatorPod | None = None
        self.networks: list[PodNetwork] = []

    def helm(self, *args: str) -> str:
        done = subprocess.run(
            [self.helm_binary, *args], env=self.env, capture_output=True, text=True, check=False, timeout=300
        )
        assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def values(self, version: str, **more: Any) -> Path:
        """The README's values for images from a mirror (this registry), and the test's settings."""
        path = self.folder / f"values-{version}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "image": {"repository": f"{self.published.prefix}/mailrelay-operator"},
                    "postfixImage": f"{self.published.prefix}/postfix:{version}",
                    "watchNamespaces": list(NAMESPACES.values()),
                    "resyncSeconds": 5,
                    # kwok's pod addresses are not this machine's: no delivery probe of relay pods.
                    "extraEnv": [{"name": "MAILRELAY_DELIVERY_PROBE", "value": "false"}],
                    **more,  # only values the version's chart has: its schema refuses any other
                }
            )
        )
        return path

    def install(self, version: str, verb: str = "install", **more: Any) -> None:
        self.helm(
            verb,
            RELEASE,
            self.chart,
            "--version",
            version,
            "-n",
            SYSTEM,
            "-f",
            str(self.values(version, **more)),
            "--plain-http",
        )

    def upgrade_crd(self, version: str) -> None:
        """The README's step before `helm upgrade`: the new chart's CRD, applied server-side."""
        crds = self.helm("show", "crds", self.chart, "--version", version, "--plain-http")
        self.plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crds)

    def deployment(self) -> dict[str, Any]:
        selector = f"app.kubernetes.io/instance={RELEASE}"
        listed = self.plane.request("GET", f"/apis/apps/v1/namespaces/{SYSTEM}/deployments?labelSelector={selector}")
        [deployment] = listed["items"]
        return dict(deployment)

    def run_operator(self) -> dict[str, Any]:
        """What the kubelet does for the Deployment's new pod: pull its image, start it (Recreate: the
        old one is gone first)."""
        self.stop_operator()
        deployment = self.deployment()
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        established(self.plane, f"system:serviceaccount:{SYSTEM}:{account}", NAMESPACES["relay"])
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        images.pull(container["image"], Path(self.env["REGISTRY_AUTH_FILE"]))
        self.networks.append(PodNetwork().create())
        self.operator = OperatorPod(self.plane, deployment, self.networks[-1])
        self.operator.start()
        return deployment

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def close(self) -> None:
        self.stop_operator()
        for network in self.networks:
            network.delete()


@pytest.fixture
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A control plane of its own: helm installs the CRDs as on a new cluster, whatever CRD or relays
    the session's control plane holds from other tests on this worker."""
    from controlplane import ControlPlane

    plane = ControlPlane(tmp_path_factory.mktemp("upgrade-plane"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def installed(own_plane: Any, published: Any, previous: Any, tools: Path, tmp_path: Path) -> Iterator[Installed]:
    control_plane = own_plane
    for namespace in (SYSTEM, *NAMESPACES.values()):
        control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("label", "namespace", SYSTEM, "pod-security.kubernetes.io/enforce=restricted")
    cluster = Installed(control_plane, published, tools, tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()
        subprocess.run(
            [cluster.helm_binary, "uninstall", RELEASE, "-n", SYSTEM, "--ignore-not-found"],
            env=cluster.env,
            capture_output=True,
            check=False,
        )
        for namespace in (*NAMESPACES.values(), SYSTEM):
            control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        for summary in (published.summary, previous):
            images.forget(f"{published.prefix}/mailrelay-operator:{summary['version']}")


def _get(plane: Any, path: str) -> Any:
    try:
        return plane.request("GET", path)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def relay_manifest(name: str, image: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"mailFromFQDN": f"{name}.example.com"}
    if image:
        spec["image"] = image
    return {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": "MailRelay",
        "metadata": {"name": name, "namespace": NAMESPACES[name]},
        "spec": spec,
    }


def relay_path(name: str) -> str:
    return f"/apis/mailrelay.dev/v1alpha1/namespaces/{NAMESPACES[name]}/mailrelays/{name}"


def workload(plane: Any, name: str) -> dict[str, Any]:
    path = f"/apis/apps/v1/namespaces/{NAMESPACES[name]}/deployments/mailrelay-{name}"
    found: dict[str, Any] = plane.request("GET", path)
    return found


def pod_images(deployment: dict[str, Any]) -> set[str]:
    return {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}


def converged(
    plane: Any,
    names: list[str],
    postfix: dict[str, str],
    log: Callable[[], str],
    sample: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Wait until every relay is Current (kstatus) and Ready, its workload on the Postfix image expected;
    `sample` looks at the cluster on each poll."""

    def check() -> dict[str, Any] | None:
        sample()
        relays = {n: plane.request("GET", relay_path(n)) for n in names}
        for name, relay in relays.items():
            ready = {c["type"]: c["status"] for c in relay.get("status", {}).get("conditions", [])}.get("Ready")
            if kstatus(relay) != "Current" or ready != "True" or pod_images(workload(plane, name)) != {postfix[name]}:
                return None
        return relays

    try:
        found: dict[str, Any] = eventually(check, timeout=240, what=f"relays {names} converged")
    except AssertionError as error:
        raise AssertionError(f"{error}\noperator log:\n{log()[-4000:]}") from None
    return found


def replica_sets(plane: Any, name: str) -> dict[str, str]:
    """The relay's workload's ReplicaSets: uid -> when it was made (a new one is a rollout)."""
    uid = workload(plane, name)["metadata"]["uid"]
    sets = plane.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACES[name]}/replicasets")["items"]
    return {
        r["metadata"]["uid"]: r["metadata"]["creationTimestamp"]
        for r in sets
        if any(o.get("uid") == uid for o in r["metadata"].get("ownerReferences", []))
    }


def not_rolled(plane: Any, name: str, before: dict[str, Any], sets: dict[str, str]) -> None:
    """The workload's spec is as it was and it has no new ReplicaSet: its pods were not rolled. (Its
    generation may move: a Deployment's annotations count, and each version stamps `rendered-by`.)"""
    now = workload(plane, name)
    lines = difflib.unified_diff(
        json.dumps(before["spec"], indent=1, sort_keys=True).splitlines(),
        json.dumps(now["spec"], indent=1, sort_keys=True).splitlines(),
        lineterm="",
    )
    assert now["spec"] == before["spec"], f"{name}'s workload was changed:\n" + "\n".join(lines)
    assert replica_sets(plane, name) == sets, f"{name} was rolled"


class Rollouts:
    """What an upgrade's rollouts did, sampled while the relays converge: which relays were rolling at
    once (their pod template changed and not yet all updated and available), and which showed
    RolloutWaiting."""

    def __init__(self, plane: Any, templates: dict[str, Any]) -> None:
        self.plane, self.templates = plane, templates
        self.most: set[str] = set()
        self.waited: set[str] = set()

    def sample(self) -> None:
        rolling = set()
        for name, template in self.templates.items():
            found = workload(self.plane, name)
            meta, status, replicas = found["metadata"], found.get("status") or {}, found["spec"].get("replicas", 1)
            done = status.get("observedGeneration") == meta["generation"] and all(
                status.get(k) == replicas for k in ("replicas", "updatedReplicas", "availableReplicas")
            )
            if found["spec"]["template"] != template and not done:
                rolling.add(name)
            relay = self.plane.request("GET", relay_path(name))
            if any(c.get("reason") == "RolloutWaiting" for c in relay.get("status", {}).get("conditions", [])):
                self.waited.add(name)
        if len(rolling) > len(self.most):
            self.most = rolling


def rollout_window(plane: Any, name: str) -> tuple[str, str]:
    """When the relay's rollout began (its workload's newest ReplicaSet made) and ended (the Deployment
    controller's Progressing condition turned NewReplicaSetAvailable), as the API server's timestamps."""
    found = workload(plane, name)
    [progressing] = [c for c in found["status"]["conditions"] if c["type"] == "Progressing"]
    assert progressing["reason"] == "NewReplicaSetAvailable", progressing
    return max(replica_sets(plane, name).values()), progressing["lastUpdateTime"]


def test_upgrade_from_the_previous_release_to_this_tree(installed: Installed, published: Any, previous: Any) -> None:
    plane, prefix = installed.plane, published.prefix
    old, new = previous["version"], published.version
    old_postfix, new_postfix = f"{prefix}/postfix:{old}", f"{prefix}/postfix:{new}"
    names = ["relay", "second", "pinned"]

    def log() -> str:
        return installed.operator.log() if installed.operator else ""

    # The previous release, from the registry, as a user installs it.
    installed.install(old)
    deployment = installed.run_operator()
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == old
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [relay_manifest("relay"), relay_manifest("second"), relay_manifest("pinned", image=old_postfix)]
        ),
    )
    before = converged(plane, names, dict.fromkeys(names, old_postfix), log)
    workloads = {n: workload(plane, n) for n in names}
    crd = plane.request("GET", f"/apis/apiextensions.k8s.io/v1/{CRD}")

    # The README's upgrade: the new CRD in place, then helm upgrade; the new operator's pod replaces the old.
    installed.upgrade_crd(new)
    upgraded_crd = plane.request("GET", f"/apis/apiextensions.k8s.io/v1/{CRD}")
    shipped = installed.helm("show", "crds", installed.chart, "--version", new, "--plain-http")
    [shipped_crd] = [d for d in yaml.safe_load_all(shipped) if d and d["metadata"]["name"] == CRD.rsplit("/", 1)[1]]
    assert upgraded_crd["metadata"]["uid"] == crd["metadata"]["uid"]  # in place: relays were never at risk
    assert upgraded_crd["spec"]["versions"] == shipped_crd["spec"]["versions"]
    assert "kubectl" in {f["manager"] for f in upgraded_crd["metadata"]["managedFields"]}
    installed.install(new, verb="upgrade", maxRollingRelays=LIMIT)
    replica_sets_before = {n: replica_sets(plane, n) for n in names}
    rollouts = Rollouts(plane, {n: workloads[n]["spec"]["template"] for n in names})
    deployment = installed.run_operator()
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == new
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{prefix}/mailrelay-operator:{new}"
    # The chart's value reaches the operator the pod runs, as the setting it reads.
    assert {"name": "MAILRELAY_MAX_ROLLING_RELAYS", "value": str(LIMIT)} in container["env"]
    expected = {"relay": new_postfix, "second": new_postfix, "pinned": old_postfix}
    after = converged(plane, names, expected, log, rollouts.sample)
    for name in names:  # the same relays, taken over, not recreated
        assert after[name]["metadata"]["uid"] == before[name]["metadata"]["uid"]
    rolled_now = [n for n in names if workload(plane, n)["spec"]["template"] != workloads[n]["spec"]["template"]]
    assert set(ROLLING) <= set(rolled_now), rolled_now
    for name in rolled_now:
        rolled = workload(plane, name)
        assert rolled["metadata"]["uid"] == workloads[name]["metadata"]["uid"]
        assert rolled["metadata"]["generation"] > workloads[name]["metadata"]["generation"]
        assert "mailrelay-operator" in {f["manager"] for f in rolled["metadata"]["managedFields"]}
    # The rolling limit held: never more than LIMIT rolling in any sample, and each rollout began only
    # once the one before it had ended (the API server's timestamps, to the second).
    assert len(rollouts.most) <= LIMIT, f"rolling at once: {sorted(rollouts.most)}"
    windows = sorted(rollout_window(plane, name) for name in rolled_now)
    for (_, ended), (began, _) in itertools.pairwise(windows):
        assert began >= ended, f"a rollout began at {began}, before the previous ended at {ended}: {windows}"
    # One had to wait for its turn, and its status said so (for as long as the other's rollout).
    assert rollouts.waited, f"no relay showed RolloutWaiting: {windows}\n{log()[-3000:]}"
    print(f"\nupgrade rollouts (limit {LIMIT}): {windows}; seen waiting: {sorted(rollouts.waited)}")
    if "pinned" not in rolled_now:  # the same pod under both versions: not rolled at all
        not_rolled(plane, "pinned", workloads["pinned"], replica_sets_before["pinned"])
    assert "Traceback" not in log()

    # helm uninstall keeps the CRD (Helm never deletes it) and with it every relay and its children.
    settled = {n: workload(plane, n) for n in names}
    settled_sets = {n: replica_sets(plane, n) for n in names}
    installed.helm("uninstall", RELEASE, "-n", SYSTEM, "--wait")
    installed.stop_operator()  # the kubelet stops the deleted Deployment's pod
    assert _get(plane, f"/apis/apiextensions.k8s.io/v1/{CRD}")["metadata"]["uid"] == crd["metadata"]["uid"]
    for name in names:
        assert workload(plane, name)["metadata"]["uid"] == settled[name]["metadata"]["uid"]
        kept = plane.request("GET", relay_path(name))
        assert kept["metadata"]["uid"] == before[name]["metadata"]["uid"]

    # A reinstall takes the relays over without rolling them; a deleted child shows it is at work.
    installed.install(new)
    installed.run_operator()
    plane.kubectl("delete", "service", "mail", "-n", NAMESPACES["relay"])
    eventually(
        lambda: _get(plane, f"/api/v1/namespaces/{NAMESPACES['relay']}/services/mail"),
        timeout=120,
        what=f"the reinstalled operator restoring Service mail\n{log()[-3000:]}",
    )
    converged(plane, names, expected, log)
    for name in names:  # the same version renders the same pods: none rolled, none even written
        not_rolled(plane, name, settled[name], settled_sets[name])
        assert workload(plane, name)["metadata"]["generation"] == settled[name]["metadata"]["generation"], name

    # The documented downgrade: not refused; the older operator renders its own Postfix image again.
    installed.install(old, verb="upgrade")
    deployment = installed.run_operator()
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == old
    converged(plane, names, dict.fromkeys(names, old_postfix), log)
    for name in names:  # as the older version rendered them at first
        assert workload(plane, name)["spec"]["template"] == workloads[name]["spec"]["template"], name
    history = json.loads(installed.helm("history", RELEASE, "-n", SYSTEM, "-o", "json"))
    assert [h["app_version"] for h in history] == [new, old]
