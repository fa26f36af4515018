"""The relay's NetworkPolicy on the real kube-apiserver, written by the operator's own code under its shipped RBAC.

One reconcile pass as the operator's ServiceAccount (bound by manifests/cluster-wide) creates the
policy through the apiserver's admission and validation; the next pass finds nothing to write (no drift
after the server's defaulting); switching the policy off deletes ours and nothing else.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mailrelay.api.spec import parse
from mailrelay.controller.apply import contains
from mailrelay.kube.client import Api, ApiError
from mailrelay.render.relay import network_policy

from controlplane import ControlPlane
from support.one_pass import one_pass
from support.paths import ROOT
from support.samples import GUARDED, relay_object
from support.shipped_operator import operator_client

NAMESPACE = "guarded"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies"
RELAYS = f"/apis/mailrelay.dev/v1alpha1/namespaces/{NAMESPACE}/mailrelays"


@pytest.fixture(scope="module")
def operator_api(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The operator's Api as its ServiceAccount, with the RBAC the cluster-wide kustomization grants."""
    yield operator_client(control_plane, tmp_path_factory.mktemp("operator"), NAMESPACE)
    control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _relay(plane: ControlPlane, spec: dict[str, Any]) -> dict[str, Any]:
    obj = relay_object(spec, namespace=NAMESPACE, uid=None)
    del obj["metadata"]["generation"]
    plane.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(obj))
    return dict(plane.request("GET", f"{RELAYS}/relay"))


def test_the_operator_creates_keeps_and_prunes_only_its_policy(control_plane: ControlPlane, operator_api: Api) -> None:
    plane = control_plane
    body = _relay(plane, GUARDED)
    first = one_pass(operator_api, body)
    assert "created NetworkPolicy mailrelay-relay" in first.outcome.done, first.plan.assessment
    live = plane.request("GET", f"{POLICIES}/mailrelay-relay")
    desired = network_policy(parse(body))
    assert contains(desired["spec"], live["spec"]), (desired["spec"], live["spec"])
    assert live["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    # Nothing to write on the next pass: the server's defaults did not turn into drift.
    again = one_pass(operator_api, dict(plane.request("GET", f"{RELAYS}/relay")))
    assert again.plan.writes == [] and again.outcome.done == []
    # A policy that is not the relay's, with the relay's labels: never pruned.
    lookalike = copy.deepcopy(desired)
    lookalike["metadata"] = {"name": "lookalike", "namespace": NAMESPACE, "labels": desired["metadata"]["labels"]}
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(lookalike))
    open_egress = {key: value for key, value in GUARDED.items() if key != "egress"}
    off = _relay(plane, {**open_egress, "networkPolicy": {"enabled": False}})
    pruned = one_pass(operator_api, off)
    assert "deleted NetworkPolicy mailrelay-relay" in pruned.outcome.done
    names = [p["metadata"]["name"] for p in plane.request("GET", POLICIES)["items"]]
    assert names == ["lookalike"]


def test_the_apiserver_refuses_what_the_policy_must_never_contain(operator_api: Api) -> None:
    """The validation the rendered policies pass is real: a broken peer is refused by the same server."""
    policy = network_policy(parse(relay_object(GUARDED, namespace=NAMESPACE, uid=None)))
    policy["metadata"]["name"] = "broken"
    policy["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"] = {"bad key!": "x"}
    with pytest.raises(ApiError) as refused:
        operator_api.apply(policy)
    assert refused.value.status == 422 and "bad key!" in str(refused.value)


def test_every_example_policy_is_admitted(operator_api: Api) -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "MailRelay":
                relay = parse({**doc, "metadata": {**doc["metadata"], "namespace": NAMESPACE}})
                if relay.spec.guardrails.network_policy:
                    policy = network_policy(relay)
                    policy["metadata"]["name"] = f"example-{path.stem}"
                    assert operator_api.apply(policy)["metadata"]["name"] == f"example-{path.stem}"
