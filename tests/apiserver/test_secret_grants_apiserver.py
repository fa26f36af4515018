"""A Secret a relay names must name the relay: on the real kube-apiserver, as the operator's ServiceAccount.

Issue 23: `relay.authSecretRef` and `dkim.keySecretRef` accepted any Secret of the namespace, so
whoever may create a MailRelay (but not read Secrets) could send with another team's smarthost login
or sign with another relay's DKIM key, through the operator's rights. A referenced Secret now needs
the annotation mailrelay.dev/relays naming the relay (or *); otherwise the relay is Stalled with
SecretNotGranted and nothing is written. Each pass here is one reconcile pass (support.one_pass) with a client holding a
token of the shipped ServiceAccount and only the RBAC manifests/cluster-wide grants.
"""

from __future__ import annotations

import base64
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mailrelay.api import conditions as cond
from mailrelay.api.names import SECRET_GRANT_ANNOTATION
from mailrelay.controller.client import OperatorApi as Api

from controlplane import ControlPlane
from support.one_pass import one_pass
from support.shipped_operator import operator_client

NAMESPACE = "secret-grants"
RELAYS = f"/apis/mailrelay.dev/v1alpha1/namespaces/{NAMESPACE}/mailrelays"
PASSWORD = "the-other-teams-password"


@pytest.fixture(scope="module")
def operator_api(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    yield operator_client(control_plane, tmp_path_factory.mktemp("sa"), NAMESPACE)
    control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def secret(plane: ControlPlane, name: str, data: dict[str, str], grant: str | None = None) -> None:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if grant is not None:
        meta["annotations"] = {SECRET_GRANT_ANNOTATION: grant}
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": data}
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))


def relay(plane: ControlPlane, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": "MailRelay",
        "metadata": {"name": name},
        "spec": {"mailFromFQDN": "apps.example.com", "service": {"name": f"mail-{name}"}, **spec},
    }
    return dict(plane.request("POST", RELAYS, body))


def get(plane: ControlPlane, path: str) -> dict[str, Any] | None:
    try:
        return dict(plane.request("GET", path))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def children(plane: ControlPlane, name: str) -> dict[str, dict[str, Any] | None]:
    return {
        "Deployment": get(plane, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/mailrelay-{name}"),
        "ConfigMap": get(plane, f"/api/v1/namespaces/{NAMESPACE}/configmaps/mailrelay-{name}"),
    }


def pass_of(plane: ControlPlane, api: Api, name: str, **options: Any) -> Any:
    body = get(plane, f"{RELAYS}/{name}")
    assert body is not None
    return one_pass(api, body, **options)


def stalled(plane: ControlPlane, name: str) -> dict[str, Any]:
    body = get(plane, f"{RELAYS}/{name}")
    assert body is not None
    return next(c for c in body["status"]["conditions"] if c["type"] == cond.STALLED)


def test_a_smarthost_login_is_used_only_by_the_relays_it_names(control_plane: ControlPlane, operator_api: Api) -> None:
    secret(control_plane, "team-login", {"username": "team", "password": PASSWORD})
    relay(control_plane, "intruder", relay={"host": "smtp.example.net", "authSecretRef": {"name": "team-login"}})

    outcome = pass_of(control_plane, operator_api, "intruder")
    assert outcome.plan.assessment.reason == cond.SECRET_NOT_GRANTED and outcome.plan.assessment.stalled
    shown = stalled(control_plane, "intruder")
    assert (shown["status"], shown["reason"]) == ("True", cond.SECRET_NOT_GRANTED)
    assert (
        f"Secret team-login (spec.relay.authSecretRef) has no annotation {SECRET_GRANT_ANNOTATION}" in shown["message"]
    )
    assert f"kubectl annotate --overwrite secret team-login {SECRET_GRANT_ANNOTATION}=intruder" in shown["message"]
    assert children(control_plane, "intruder") == {"Deployment": None, "ConfigMap": None}  # nothing written
    assert all(PASSWORD not in str(event) for event in outcome.plan.events)

    secret(control_plane, "team-login", {"username": "team", "password": PASSWORD}, grant="team-relay, billing")
    pass_of(control_plane, operator_api, "intruder")
    assert "lets only 'billing, team-relay' use it" in stalled(control_plane, "intruder")["message"]
    assert children(control_plane, "intruder")["Deployment"] is None

    relay(control_plane, "team-relay", relay={"host": "smtp.example.net", "authSecretRef": {"name": "team-login"}})
    outcome = pass_of(control_plane, operator_api, "team-relay")
    assert outcome.plan.assessment.reason != cond.SECRET_NOT_GRANTED and not outcome.plan.assessment.stalled
    assert children(control_plane, "team-relay")["Deployment"] is not None


def test_a_revoked_grant_stalls_and_changes_nothing(control_plane: ControlPlane, operator_api: Api) -> None:
    secret(control_plane, "shared-login", {"username": "u", "password": PASSWORD}, grant="*")
    relay(control_plane, "revoked", relay={"host": "smtp.example.net", "authSecretRef": {"name": "shared-login"}})
    pass_of(control_plane, operator_api, "revoked")
    before = children(control_plane, "revoked")["Deployment"]
    assert before is not None
    control_plane.kubectl("-n", NAMESPACE, "annotate", "secret", "shared-login", f"{SECRET_GRANT_ANNOTATION}-")
    outcome = pass_of(control_plane, operator_api, "revoked")
    assert outcome.plan.assessment.reason == cond.SECRET_NOT_GRANTED
    after = children(control_plane, "revoked")["Deployment"]
    assert after is not None and after["metadata"]["generation"] == before["metadata"]["generation"]  # not written
    assert after["spec"]["template"] == before["spec"]["template"]


def test_another_relays_dkim_key_is_not_signed_with_nor_shown(control_plane: ControlPlane, operator_api: Api) -> None:
    relay(control_plane, "owner", dkim={"domain": "example.com"})
    pass_of(control_plane, operator_api, "owner")  # generates mailrelay-owner-dkim, owned by that relay
    key_secret = get(control_plane, f"/api/v1/namespaces/{NAMESPACE}/secrets/mailrelay-owner-dkim")
    assert key_secret is not None
    relay(control_plane, "copycat", dkim={"domain": "example.com", "keySecretRef": {"name": "mailrelay-owner-dkim"}})
    outcome = pass_of(control_plane, operator_api, "copycat")
    assert outcome.plan.assessment.reason == cond.SECRET_NOT_GRANTED
    body = get(control_plane, f"{RELAYS}/copycat")
    assert body is not None
    assert body["status"]["dkim"]["records"] == []  # not even the public half
    assert body["status"]["dkim"]["signing"] == "Blocked"
    assert "spec.dkim.keySecretRef" in stalled(control_plane, "copycat")["message"]
    assert children(control_plane, "copycat")["ConfigMap"] is None
    key = base64.b64decode(key_secret["data"]["rsa.private"]).decode()
    assert all(key not in str(event) for event in outcome.plan.events)


def test_a_brought_dkim_key_works_once_granted(control_plane: ControlPlane, operator_api: Api) -> None:
    own = get(control_plane, f"/api/v1/namespaces/{NAMESPACE}/secrets/mailrelay-owner-dkim")
    if own is None:  # run alone: make a key the way the operator does
        relay(control_plane, "owner", dkim={"domain": "example.com"})
        pass_of(control_plane, operator_api, "owner")
        own = get(control_plane, f"/api/v1/namespaces/{NAMESPACE}/secrets/mailrelay-owner-dkim")
    assert own is not None
    pem = base64.b64decode(own["data"]["rsa.private"]).decode()
    secret(control_plane, "brought-key", {"rsa.private": pem}, grant="brought")
    relay(control_plane, "brought", dkim={"domain": "example.com", "keySecretRef": {"name": "brought-key"}})
    outcome = pass_of(control_plane, operator_api, "brought")
    assert not outcome.plan.assessment.stalled, outcome.plan.assessment
    body = get(control_plane, f"{RELAYS}/brought")
    assert body is not None and body["status"]["dkim"]["records"]


def test_with_grants_not_required_a_relay_uses_any_secret_as_before(
    control_plane: ControlPlane, operator_api: Api
) -> None:
    secret(control_plane, "legacy-login", {"username": "u", "password": PASSWORD})
    relay(control_plane, "legacy", relay={"host": "smtp.example.net", "authSecretRef": {"name": "legacy-login"}})
    outcome = pass_of(control_plane, operator_api, "legacy", require_grant=False)
    assert not outcome.plan.assessment.stalled, outcome.plan.assessment
    assert children(control_plane, "legacy")["Deployment"] is not None
