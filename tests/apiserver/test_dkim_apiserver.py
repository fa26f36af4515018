"""The DKIM key Secret on the real kube-apiserver, written by the operator's service account with the
RBAC the manifests ship: created once, kept, never written when foreign or changed since it was read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mailrelay.api import dkim
from mailrelay.api.spec import parse
from mailrelay.controller import dkim_keys
from mailrelay.kube.client import Api, ApiError

from controlplane import ControlPlane
from support.one_pass import one_pass
from support.shipped_operator import operator_client

NAMESPACE = "dkim-keys"
RELAYS = f"/apis/mailrelay.dev/v1alpha1/namespaces/{NAMESPACE}/mailrelays"


@pytest.fixture(scope="module")
def operator_api(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The operator's client, authenticated as its service account, bound by the cluster-wide RBAC."""
    yield operator_client(control_plane, tmp_path_factory.mktemp("sa"), NAMESPACE)
    control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def create_relay(plane: ControlPlane, name: str) -> dict[str, Any]:
    return dict(
        plane.request(
            "POST",
            RELAYS,
            {
                "apiVersion": "mailrelay.dev/v1alpha1",
                "kind": "MailRelay",
                "metadata": {"name": name},
                "spec": {"mailFromFQDN": "apps.example.com", "dkim": {"domain": "example.com"}},
            },
        )
    )


def get(plane: ControlPlane, path: str) -> dict[str, Any]:
    return dict(plane.request("GET", path))


def test_the_service_account_creates_keeps_and_rotates_only_its_own_secret(
    control_plane: ControlPlane, operator_api: Api
) -> None:
    relay = create_relay(control_plane, "own")
    secret_path = f"/api/v1/namespaces/{NAMESPACE}/secrets/mailrelay-own-dkim"
    one_pass(operator_api, relay)
    secret = get(control_plane, secret_path)
    [owner] = secret["metadata"]["ownerReferences"]
    assert owner["uid"] == relay["metadata"]["uid"] and owner["controller"] is True
    key = base64.b64decode(secret["data"]["rsa.private"])
    shown = get(control_plane, f"{RELAYS}/own")["status"]["dkim"]
    assert shown["records"][0]["name"] == "mail._domainkey.example.com"
    assert shown["records"][0]["value"].endswith(dkim.public_key_data("rsa", key, "t"))

    one_pass(operator_api, get(control_plane, f"{RELAYS}/own"))
    assert get(control_plane, secret_path)["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]

    control_plane.kubectl("-n", NAMESPACE, "annotate", "mailrelay", "own", f"{dkim_keys.ROTATE_ANNOTATION}=1")
    one_pass(operator_api, get(control_plane, f"{RELAYS}/own"))
    rotated = get(control_plane, secret_path)
    assert base64.b64decode(rotated["data"]["rsa.private"]) != key
    assert rotated["metadata"]["uid"] == secret["metadata"]["uid"]  # the same object, patched

    # A write from a stale read is refused by the server: the resourceVersion is a precondition.
    relay_now = parse(get(control_plane, f"{RELAYS}/own"))
    stale = dkim_keys._secret(relay_now, "mailrelay-own-dkim", {"rsa.private": key}, "2", secret)
    with pytest.raises(ApiError) as refused:
        operator_api.apply(stale)
    assert refused.value.status == 409
    assert get(control_plane, secret_path)["data"] == rotated["data"]


def test_a_foreign_secret_of_that_name_is_never_written(control_plane: ControlPlane, operator_api: Api) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mailrelay-other-dkim"},
        "stringData": {"note": "someone else's"},
    }
    control_plane.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(foreign))
    before = get(control_plane, f"/api/v1/namespaces/{NAMESPACE}/secrets/mailrelay-other-dkim")
    relay = create_relay(control_plane, "other")
    outcome = one_pass(operator_api, relay)
    assert outcome.plan.assessment.reason == dkim_keys.SECRET_CONFLICT and outcome.plan.assessment.stalled
    after = get(control_plane, f"/api/v1/namespaces/{NAMESPACE}/secrets/mailrelay-other-dkim")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    # Creating over it is refused too, not retried into an overwrite.
    with pytest.raises(ApiError) as refused:
        operator_api.create(dkim_keys._secret(parse(relay), "mailrelay-other-dkim", {"rsa.private": b"x"}, ""))
    assert refused.value.status == 409


def test_the_service_account_cannot_list_secrets(operator_api: Api) -> None:
    """RBAC grants get/create/patch, not list or watch: the operator cannot enumerate Secrets."""
    with pytest.raises(ApiError) as refused:
        operator_api.list_all("Secret", NAMESPACE, {})
    assert refused.value.status == 403
