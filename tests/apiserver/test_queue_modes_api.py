"""The persistent-queue children on the real kube-apiserver: accepted, stable, refused where it must.

The operator's passes (decide, execute, the kube client) against the control plane, with a
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

from mailrelay.api import conditions as cond
from mailrelay.api.spec import parse
from mailrelay.controller.client import OperatorApi as Api
from mailrelay.controller.reconcile import Pass
from mailrelay.kube.client import ApiError
from mailrelay.render.relay import stateful_set

from controlplane import ControlPlane
from support.one_pass import one_pass
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
    yield control_plane, Api.from_kubeconfig(control_plane.kubeconfig)
    control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _relay(plane: ControlPlane, spec: dict[str, Any]) -> dict[str, Any]:
    obj = relay_object(spec, namespace=NAMESPACE, uid=None)
    obj["metadata"].pop("generation")
    created = plane.request("POST", f"/apis/mailrelay.dev/v1alpha1/namespaces/{NAMESPACE}/mailrelays", obj)
    return dict(created)


def _pass(plane: ControlPlane, api: Api, **spec: Any) -> Pass:
    """One pass over the relay as it is now, its spec changed first when `spec` is given."""
    body = dict(plane.request("GET", f"/apis/mailrelay.dev/v1alpha1/namespaces/{NAMESPACE}/mailrelays/relay"))
    if spec:
        body["spec"].update(spec)
        body = dict(plane.request("PUT", f"/apis/mailrelay.dev/v1alpha1/namespaces/{NAMESPACE}/mailrelays/relay", body))
    return one_pass(api, body)


def test_persistent_children_on_the_real_apiserver(kube: tuple[ControlPlane, Api]) -> None:
    plane, api = kube
    body = _relay(plane, SPEC)
    first = _pass(plane, api)
    assert first.outcome.done == [
        f"created {kind} {name}"
        for kind, name in [
            ("NetworkPolicy", "mailrelay-relay"),
            ("ConfigMap", "mailrelay-relay"),
            ("StatefulSet", "mailrelay-relay"),
            ("PodDisruptionBudget", "mailrelay-relay"),
            ("Service", "mail"),
        ]
    ]
    # The server defaults StatefulSet, claim template and budget fields: none of that is drift.
    assert _pass(plane, api).plan.writes == []

    bigger = copy.deepcopy(body)
    bigger["spec"]["queue"]["storage"]["size"] = "2Gi"
    with pytest.raises(ApiError) as rejected:  # what the operator would meet on every pass
        api.apply(stateful_set(parse(bigger)))
    assert rejected.value.status == 422 and "Forbidden" in str(rejected.value)
    refused = _pass(plane, api, queue={"storage": {"size": "2Gi"}})
    assert refused.plan.assessment.reason == cond.QUEUE_STORAGE_IMMUTABLE
    assert "cannot change on a running relay" in refused.plan.assessment.message
    assert not [w for w in refused.plan.writes if w.kind == "StatefulSet"]
    live = api.get("StatefulSet", NAMESPACE, "mailrelay-relay")
    assert live is not None
    assert live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"

    pruned = _pass(plane, api, queue={"storage": {"size": "1Gi"}}, replicas=1)
    assert "deleted PodDisruptionBudget mailrelay-relay" in pruned.outcome.done
    assert api.get("PodDisruptionBudget", NAMESPACE, "mailrelay-relay") is None
    assert api.get("StatefulSet", NAMESPACE, "mailrelay-relay") is not None
