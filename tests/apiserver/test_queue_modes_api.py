"""The persistent-queue children on the real kube-apiserver: accepted, stable, refused where it must.

The operator's write path (kube.Api, apply_children, prune) against the control plane, with a
real MailRelay as owner so the garbage collector keeps the children. Shows that the server takes
the rendered StatefulSet and PodDisruptionBudget, that its defaulting does not make the next pass
write again, that it would reject a changed claim template (so the operator refuses it first, with
a condition, instead of failing every pass) and that the budget is pruned below two replicas.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from mailrelay.api.spec import parse
from mailrelay.controller.apply import apply_children, prune
from mailrelay.controller.client import OperatorApi as Api
from mailrelay.kube.client import ApiError
from mailrelay.render.relay import render_relay, selector_labels, stateful_set

from controlplane import ControlPlane
from support.paths import CRD_PATH
from support.samples import relay_object
from support.shipped_operator import established

NAMESPACE = "queue-modes"
SPEC = {"mailFromFQDN": "a.example", "replicas": 2, "queue": {"storage": {"size": "1Gi"}}}


@pytest.fixture(scope="module")
def kube(control_plane: ControlPlane) -> Iterator[tuple[ControlPlane, Api]]:
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD_PATH))
    control_plane.kubectl("wait", "--for=create", "--timeout=60s", "crd/mailrelays.mailrelay.dev")
    established(control_plane)
    control_plane.kubectl("create", "namespace", NAMESPACE)
    yield control_plane, Api(control_plane.api_client())
    control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _relay(plane: ControlPlane, spec: dict[str, Any]) -> dict[str, Any]:
    obj = relay_object(spec, namespace=NAMESPACE, uid=None)
    obj["metadata"].pop("generation")
    created = plane.request("POST", f"/apis/mailrelay.dev/v1alpha1/namespaces/{NAMESPACE}/mailrelays", obj)
    return dict(created)


def test_persistent_children_on_the_real_apiserver(kube: tuple[ControlPlane, Api]) -> None:
    plane, api = kube
    body = _relay(plane, SPEC)
    uid, relay = body["metadata"]["uid"], parse(body)
    first = apply_children(api, uid, render_relay(relay))
    assert [(c.kind, c.action) for c in first.children] == [
        ("NetworkPolicy", "created"),
        ("ConfigMap", "created"),
        ("StatefulSet", "created"),
        ("PodDisruptionBudget", "created"),
        ("Service", "created"),
    ]
    # The server defaults StatefulSet, claim template and budget fields: none of that is drift.
    second = apply_children(api, uid, render_relay(relay))
    assert {c.action for c in second.children} == {"unchanged"}

    bigger = copy.deepcopy(body)
    bigger["spec"]["queue"]["storage"]["size"] = "2Gi"
    changed = parse(bigger)
    with pytest.raises(ApiError) as rejected:  # what the operator would meet on every pass
        api.apply(stateful_set(changed))
    assert rejected.value.status == 422 and "Forbidden" in str(rejected.value)
    refused = apply_children(api, uid, render_relay(changed))
    [refusal] = refused.refused
    assert refusal.kind == "StatefulSet" and "cannot change on a running relay" in refusal.message
    live = api.get("StatefulSet", NAMESPACE, "mailrelay-relay")
    assert live is not None
    assert live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"

    labels = selector_labels(relay)
    assert [(c.name, c.action) for c in prune(api, uid, "PodDisruptionBudget", NAMESPACE, set(), labels)] == [
        ("mailrelay-relay", "deleted")
    ]
    assert api.get("PodDisruptionBudget", NAMESPACE, "mailrelay-relay") is None
    assert prune(api, "another-relay", "StatefulSet", NAMESPACE, set(), labels) == []  # not ours
    assert api.get("StatefulSet", NAMESPACE, "mailrelay-relay") is not None
