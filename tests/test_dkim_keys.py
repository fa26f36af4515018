"""The DKIM key Secret through real reconcile passes, over HTTP against the emulated API server.

The emulator stands in for the API server's storage only (it has no resourceVersion preconditions);
what is checked here is which Secret the operator writes, when, and what reaches status and events.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mailrelay.api import dkim
from mailrelay.controller import dkim_keys
from mailrelay.controller.reconcile import reconcile
from mailrelay.kube.client import Api
from mailrelay.local.dkim import LocalDkimError, prepare, secrets_in
from mailrelay.render.relay import CONFIG_HASH_ANNOTATION, DKIM_KEY_MOUNT

from cluster import Cluster
from conftest import make_relay

SECRET = "mailrelay-relay-dkim"


def create_relay(cluster: Cluster, namespace: str, **dkim_spec: Any) -> dict[str, Any]:
    return cluster.create(
        {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": "MailRelay",
            "metadata": {"name": "relay", "namespace": namespace},
            "spec": {"mailFromFQDN": "apps.example.com", "dkim": dkim_spec},
        }
    )


def run(api: Api, cluster: Cluster, namespace: str) -> Any:
    body = cluster.get("mailrelays", namespace, "relay")
    assert body is not None
    return reconcile(api, body)


def status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    obj = cluster.get("mailrelays", namespace, "relay")
    assert obj is not None
    return dict(obj["status"])


def secret_data(cluster: Cluster, namespace: str, name: str = SECRET) -> dict[str, bytes]:
    secret = cluster.get("secrets", namespace, name)
    assert secret is not None
    return dkim.decode_secret(secret)


def pod_template(cluster: Cluster, namespace: str) -> dict[str, Any]:
    deployment = cluster.get("deployments", namespace, "mailrelay-relay")
    assert deployment is not None
    return dict(deployment["spec"]["template"])


def stalled(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return next(c for c in status(cluster, namespace)["conditions"] if c["type"] == "Stalled")


def test_a_generated_key_is_owned_kept_and_published_but_never_shown(api: Api, cluster: Cluster) -> None:
    relay = create_relay(cluster, "gen")
    outcome = run(api, cluster, "gen")
    secret = cluster.get("secrets", "gen", SECRET)
    assert secret is not None
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"], owner["kind"]) == (relay["metadata"]["uid"], True, "MailRelay")
    pem = secret_data(cluster, "gen")["rsa.private"]
    assert dkim.public_key_data("rsa", pem, "test")  # a usable RSA key
    shown = status(cluster, "gen")["dkim"]
    [record] = shown["records"]
    assert record["name"] == "mail._domainkey.apps.example.com"
    assert record["value"] == f"v=DKIM1; k=rsa; p={dkim.public_key_data('rsa', pem, 'test')}"
    assert record["zone"].startswith('mail._domainkey.apps.example.com. 3600 IN TXT "v=DKIM1; k=rsa; p=')
    assert all(len(part) <= 255 for part in record["zone"].split('"')[1::2])
    assert (shown["signing"], shown["keySecret"], shown["domain"]) == ("Pending", SECRET, "apps.example.com")
    template = pod_template(cluster, "gen")
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "dkim-key")
    assert volume["secret"] == {"secretName": SECRET, "defaultMode": 0o400}
    mount = next(m for m in template["spec"]["containers"][0]["volumeMounts"] if m["name"] == "dkim-key")
    assert (mount["mountPath"], mount["readOnly"]) == (DKIM_KEY_MOUNT, True)
    assert [e[1] for e in outcome.events if e[1].startswith("Dkim")] == ["DkimKeyCreated"]
    # The key reaches no status, event, ConfigMap or Deployment, in any encoding.
    shared = json.dumps(
        [
            cluster.get("mailrelays", "gen", "relay"),
            outcome.events,
            cluster.list("configmaps", "gen"),
            cluster.list("deployments", "gen"),
        ]
    )
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert body[:40] not in shared and base64.b64encode(pem).decode()[:40] not in shared

    writes_before = len(cluster.writes("gen"))
    hash_before = template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    run(api, cluster, "gen")
    assert secret_data(cluster, "gen")["rsa.private"] == pem  # kept across passes
    assert [w for w in cluster.writes("gen")[writes_before:] if "secrets/" in w[1]] == []
    assert pod_template(cluster, "gen")["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == hash_before


def test_the_rotation_annotation_makes_one_new_key_and_rolls_the_pods(api: Api, cluster: Cluster) -> None:
    create_relay(cluster, "rot", selector="s2024")
    run(api, cluster, "rot")
    old_key = secret_data(cluster, "rot")["rsa.private"]
    old_record = status(cluster, "rot")["dkim"]["records"][0]
    old_hash = pod_template(cluster, "rot")["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    cluster.patch("mailrelays", "rot", "relay", {"metadata": {"annotations": {dkim_keys.ROTATE_ANNOTATION: "2025"}}})
    outcome = run(api, cluster, "rot")
    new_key = secret_data(cluster, "rot")["rsa.private"]
    assert new_key != old_key
    assert "DkimKeyRotated" in [e[1] for e in outcome.events]
    secret = cluster.get("secrets", "rot", SECRET)
    assert secret is not None and secret["metadata"]["annotations"][dkim_keys.ROTATION_ANNOTATION] == "2025"
    new_record = status(cluster, "rot")["dkim"]["records"][0]
    assert new_record["name"] == old_record["name"] and new_record["value"] != old_record["value"]
    assert pod_template(cluster, "rot")["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] != old_hash
    run(api, cluster, "rot")  # the same annotation value: no second rotation
    assert secret_data(cluster, "rot")["rsa.private"] == new_key


def test_a_foreign_secret_with_the_name_is_left_alone(api: Api, cluster: Cluster) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": "foreign"},
        "data": {"rsa.private": base64.b64encode(b"someone else's").decode()},
    }
    cluster.create(foreign)
    create_relay(cluster, "foreign")
    run(api, cluster, "foreign")
    assert cluster.get("secrets", "foreign", SECRET)["data"] == foreign["data"]  # type: ignore[index]
    condition = stalled(cluster, "foreign")
    assert condition["status"] == "True" and condition["reason"] == dkim_keys.SECRET_CONFLICT
    assert f"Secret {SECRET} already exists and is not this relay's" in condition["message"]
    assert cluster.list("deployments", "foreign") == []
    assert status(cluster, "foreign")["dkim"]["signing"] == "Blocked"


def test_a_bad_own_key_stops_before_the_rollout(api: Api, cluster: Cluster) -> None:
    good = dkim.generate("rsa", 2048)
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "byo", "namespace": "byo", "annotations": {"mailrelay.dev/relays": "relay"}},
            "data": {"rsa.private": base64.b64encode(good).decode()},
        }
    )
    create_relay(cluster, "byo", keySecretRef={"name": "byo"})
    run(api, cluster, "byo")
    running = pod_template(cluster, "byo")
    assert cluster.get("secrets", "byo", SECRET) is None  # nothing generated beside a brought key
    assert status(cluster, "byo")["dkim"]["records"][0]["value"].endswith(dkim.public_key_data("rsa", good, "t"))
    for bad, problem in [
        (
            b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
            "Secret byo key rsa.private is not an unencrypted PEM private key",
        ),
        (dkim.generate("ed25519", 0), "Secret byo key rsa.private must be an RSA private key"),
    ]:
        cluster.patch("secrets", "byo", "byo", {"data": {"rsa.private": base64.b64encode(bad).decode()}})
        run(api, cluster, "byo")
        condition = stalled(cluster, "byo")
        assert (condition["reason"], condition["message"]) == (dkim_keys.KEY_INVALID, problem)
        assert pod_template(cluster, "byo") == running  # the pods keep the last good key
    cluster.patch("secrets", "byo", "byo", {"data": {"rsa.private": None}})
    run(api, cluster, "byo")
    assert stalled(cluster, "byo")["message"] == "Secret byo lacks the key rsa.private (rsa private key, PEM)"


def test_a_missing_own_secret_is_named(api: Api, cluster: Cluster) -> None:
    create_relay(cluster, "missing", keyType="Ed25519", keySecretRef={"name": "nope"})
    run(api, cluster, "missing")
    condition = stalled(cluster, "missing")
    assert condition["reason"] == dkim_keys.KEY_NOT_FOUND
    assert condition["message"] == (
        "Secret nope (spec.dkim.keySecretRef) does not exist; create it with the key(s) rsa.private and ed25519.private"
    )


def test_switching_to_ed25519_adds_a_key_and_keeps_the_published_rsa_one(api: Api, cluster: Cluster) -> None:
    create_relay(cluster, "ed")
    run(api, cluster, "ed")
    rsa_key = secret_data(cluster, "ed")["rsa.private"]
    cluster.patch("mailrelays", "ed", "relay", {"spec": {"dkim": {"keyType": "Ed25519"}}})
    run(api, cluster, "ed")
    data = secret_data(cluster, "ed")
    assert data["rsa.private"] == rsa_key and dkim.public_key_data("ed25519", data["ed25519.private"], "t")
    names = [r["name"] for r in status(cluster, "ed")["dkim"]["records"]]
    assert names == ["mail._domainkey.apps.example.com", "mail-ed25519._domainkey.apps.example.com"]


def test_removing_dkim_removes_the_status_block(api: Api, cluster: Cluster) -> None:
    create_relay(cluster, "off")
    run(api, cluster, "off")
    assert "dkim" in status(cluster, "off")
    cluster.patch("mailrelays", "off", "relay", {"spec": {"dkim": None}})
    run(api, cluster, "off")
    assert "dkim" not in status(cluster, "off")
    volumes = [v["name"] for v in pod_template(cluster, "off")["spec"]["volumes"]]
    assert "dkim-key" not in volumes


def test_long_records_are_split_into_255_byte_strings() -> None:
    value = "v=DKIM1; k=rsa; p=" + "A" * 700
    parts = dkim.split(value)
    assert [len(p) for p in parts] == [255, 255, 208] and "".join(parts) == value
    record = dkim.Record("s._domainkey.example.com", value, "rsa-sha256")
    assert record.zone_value == " ".join(f'"{p}"' for p in parts)


def test_local_mode_names_a_missing_or_bad_key_secret(tmp_path: Path) -> None:
    relay = make_relay({"mailFromFQDN": "a.example.com", "dkim": {"keySecretRef": {"name": "k"}}})
    with pytest.raises(LocalDkimError, match="names Secret k: add it to the same YAML file"):
        prepare(relay, {}, tmp_path)
    bad = secrets_in(
        [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "stringData": {"rsa.private": "not a key"}}]
    )
    problem = "Secret k key rsa.private is not an unencrypted PEM private key"
    with pytest.raises(LocalDkimError, match=re.escape(problem)):
        prepare(relay, bad, tmp_path)
    assert not (tmp_path / "dkim-mail.txt").exists()


def test_the_example_applies(api: Api, cluster: Cluster) -> None:
    import yaml

    from conftest import ROOT

    [relay] = [d for d in yaml.safe_load_all((ROOT / "examples" / "dkim.yaml").read_text()) if d]
    relay["metadata"]["namespace"] = "example"
    cluster.create(relay)
    run(api, cluster, "example")
    shown = status(cluster, "example")["dkim"]
    assert [r["name"] for r in shown["records"]] == ["relay2026._domainkey.example.com"]
    assert shown["signing"] == "Pending" and cluster.get("secrets", "example", SECRET) is not None
