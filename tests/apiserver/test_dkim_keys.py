"""The DKIM key Secret through real reconcile passes, over HTTP against the emulated API server.

The emulator stands in for the API server's storage only (it has no resourceVersion preconditions);
what is checked here is which Secret the operator writes, when, and what reaches status and events.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mailrelay.api import dkim
from mailrelay.controller import dkim_keys
from mailrelay.kube.client import Api
from mailrelay.render.relay import CONFIG_HASH_ANNOTATION, DKIM_KEY_MOUNT

from support.emulator import Cluster
from support.one_pass import one_pass
from support.wait import present

SECRET = "mailrelay-relay-dkim"


def create_relay(emulator: Cluster, namespace: str, **dkim_spec: Any) -> dict[str, Any]:
    return emulator.create(
        {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": "MailRelay",
            "metadata": {"name": "relay", "namespace": namespace},
            "spec": {"mailFromFQDN": "apps.example.com", "dkim": dkim_spec},
        }
    )


def run(api: Api, emulator: Cluster, namespace: str) -> list[tuple[str, str, str]]:
    body = emulator.get("mailrelays", namespace, "relay")
    assert body is not None
    done = one_pass(api, body)
    return done.plan.keys.events + done.plan.events


def status(emulator: Cluster, namespace: str) -> dict[str, Any]:
    obj = emulator.get("mailrelays", namespace, "relay")
    assert obj is not None
    return dict(obj["status"])


def secret_data(emulator: Cluster, namespace: str, name: str = SECRET) -> dict[str, bytes]:
    secret = emulator.get("secrets", namespace, name)
    assert secret is not None
    return dkim.decode_secret(secret)


def pod_template(emulator: Cluster, namespace: str) -> dict[str, Any]:
    deployment = emulator.get("deployments", namespace, "mailrelay-relay")
    assert deployment is not None
    return dict(deployment["spec"]["template"])


def stalled(emulator: Cluster, namespace: str) -> dict[str, Any]:
    return next(c for c in status(emulator, namespace)["conditions"] if c["type"] == "Stalled")


def test_a_generated_key_is_owned_kept_and_published_but_never_shown(api: Api, emulator: Cluster) -> None:
    relay = create_relay(emulator, "gen")
    events = run(api, emulator, "gen")
    secret = emulator.get("secrets", "gen", SECRET)
    assert secret is not None
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"], owner["kind"]) == (relay["metadata"]["uid"], True, "MailRelay")
    pem = secret_data(emulator, "gen")["rsa.private"]
    assert dkim.public_key_data("rsa", pem, "test")  # a usable RSA key
    shown = status(emulator, "gen")["dkim"]
    [record] = shown["records"]
    assert record["name"] == "mail._domainkey.apps.example.com"
    assert record["value"] == f"v=DKIM1; k=rsa; p={dkim.public_key_data('rsa', pem, 'test')}"
    assert record["zone"].startswith('mail._domainkey.apps.example.com. 3600 IN TXT "v=DKIM1; k=rsa; p=')
    assert all(len(part) <= 255 for part in record["zone"].split('"')[1::2])
    assert (shown["signing"], shown["keySecret"], shown["domain"]) == ("Pending", SECRET, "apps.example.com")
    template = pod_template(emulator, "gen")
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "dkim-key")
    assert volume["secret"] == {"secretName": SECRET, "defaultMode": 0o400}
    mount = next(m for m in template["spec"]["containers"][0]["volumeMounts"] if m["name"] == "dkim-key")
    assert (mount["mountPath"], mount["readOnly"]) == (DKIM_KEY_MOUNT, True)
    assert [e[1] for e in events if e[1].startswith("Dkim")] == ["DkimKeyCreated"]
    # The key reaches no status, event, ConfigMap or Deployment, in any encoding.
    shared = json.dumps(
        [
            emulator.get("mailrelays", "gen", "relay"),
            events,
            emulator.list("configmaps", "gen"),
            emulator.list("deployments", "gen"),
        ]
    )
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert body[:40] not in shared and base64.b64encode(pem).decode()[:40] not in shared

    writes_before = len(emulator.writes("gen"))
    hash_before = template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    run(api, emulator, "gen")
    assert secret_data(emulator, "gen")["rsa.private"] == pem  # kept across passes
    assert [w for w in emulator.writes("gen")[writes_before:] if "secrets/" in w[1]] == []
    assert pod_template(emulator, "gen")["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == hash_before


def test_the_rotation_annotation_makes_one_new_key_and_rolls_the_pods(api: Api, emulator: Cluster) -> None:
    create_relay(emulator, "rot", selector="s2024")
    run(api, emulator, "rot")
    old_key = secret_data(emulator, "rot")["rsa.private"]
    old_record = status(emulator, "rot")["dkim"]["records"][0]
    old_hash = pod_template(emulator, "rot")["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    emulator.patch("mailrelays", "rot", "relay", {"metadata": {"annotations": {dkim_keys.ROTATE_ANNOTATION: "2025"}}})
    events = run(api, emulator, "rot")
    new_key = secret_data(emulator, "rot")["rsa.private"]
    assert new_key != old_key
    assert "DkimKeyRotated" in [e[1] for e in events]
    secret = emulator.get("secrets", "rot", SECRET)
    assert secret is not None and secret["metadata"]["annotations"][dkim_keys.ROTATION_ANNOTATION] == "2025"
    new_record = status(emulator, "rot")["dkim"]["records"][0]
    assert new_record["name"] == old_record["name"] and new_record["value"] != old_record["value"]
    assert pod_template(emulator, "rot")["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] != old_hash
    run(api, emulator, "rot")  # the same annotation value: no second rotation
    assert secret_data(emulator, "rot")["rsa.private"] == new_key


def test_a_foreign_secret_with_the_name_is_left_alone(api: Api, emulator: Cluster) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": "foreign"},
        "data": {"rsa.private": base64.b64encode(b"someone else's").decode()},
    }
    emulator.create(foreign)
    create_relay(emulator, "foreign")
    run(api, emulator, "foreign")
    assert present(emulator.get("secrets", "foreign", SECRET))["data"] == foreign["data"]
    condition = stalled(emulator, "foreign")
    assert condition["status"] == "True" and condition["reason"] == dkim_keys.SECRET_CONFLICT
    assert f"Secret {SECRET} already exists and is not this relay's" in condition["message"]
    assert emulator.list("deployments", "foreign") == []
    assert status(emulator, "foreign")["dkim"]["signing"] == "Blocked"


def test_a_bad_own_key_stops_before_the_rollout(api: Api, emulator: Cluster) -> None:
    good = dkim.generate("rsa", 2048)
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "byo", "namespace": "byo", "annotations": {"mailrelay.dev/relays": "relay"}},
            "data": {"rsa.private": base64.b64encode(good).decode()},
        }
    )
    create_relay(emulator, "byo", keySecretRef={"name": "byo"})
    run(api, emulator, "byo")
    running = pod_template(emulator, "byo")
    assert emulator.get("secrets", "byo", SECRET) is None  # nothing generated beside a brought key
    assert status(emulator, "byo")["dkim"]["records"][0]["value"].endswith(dkim.public_key_data("rsa", good, "t"))
    for bad, problem in [
        (
            b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
            "Secret byo key rsa.private is not an unencrypted PEM private key",
        ),
        (dkim.generate("ed25519", 0), "Secret byo key rsa.private must be an RSA private key"),
    ]:
        emulator.patch("secrets", "byo", "byo", {"data": {"rsa.private": base64.b64encode(bad).decode()}})
        run(api, emulator, "byo")
        condition = stalled(emulator, "byo")
        assert (condition["reason"], condition["message"]) == (dkim_keys.KEY_INVALID, problem)
        assert pod_template(emulator, "byo") == running  # the pods keep the last good key
    emulator.patch("secrets", "byo", "byo", {"data": {"rsa.private": None}})
    run(api, emulator, "byo")
    assert stalled(emulator, "byo")["message"] == "Secret byo lacks the key rsa.private (rsa private key, PEM)"


def test_a_missing_own_secret_is_named(api: Api, emulator: Cluster) -> None:
    create_relay(emulator, "missing", keyType="Ed25519", keySecretRef={"name": "nope"})
    run(api, emulator, "missing")
    condition = stalled(emulator, "missing")
    assert condition["reason"] == dkim_keys.KEY_NOT_FOUND
    assert condition["message"] == (
        "Secret nope (spec.dkim.keySecretRef) does not exist; create it with the key(s) rsa.private and ed25519.private"
    )


def test_switching_to_ed25519_adds_a_key_and_keeps_the_published_rsa_one(api: Api, emulator: Cluster) -> None:
    create_relay(emulator, "ed")
    run(api, emulator, "ed")
    rsa_key = secret_data(emulator, "ed")["rsa.private"]
    emulator.patch("mailrelays", "ed", "relay", {"spec": {"dkim": {"keyType": "Ed25519"}}})
    run(api, emulator, "ed")
    data = secret_data(emulator, "ed")
    assert data["rsa.private"] == rsa_key and dkim.public_key_data("ed25519", data["ed25519.private"], "t")
    names = [r["name"] for r in status(emulator, "ed")["dkim"]["records"]]
    assert names == ["mail._domainkey.apps.example.com", "mail-ed25519._domainkey.apps.example.com"]


def test_removing_dkim_removes_the_status_block(api: Api, emulator: Cluster) -> None:
    create_relay(emulator, "off")
    run(api, emulator, "off")
    assert "dkim" in status(emulator, "off")
    emulator.patch("mailrelays", "off", "relay", {"spec": {"dkim": None}})
    run(api, emulator, "off")
    assert "dkim" not in status(emulator, "off")
    volumes = [v["name"] for v in pod_template(emulator, "off")["spec"]["volumes"]]
    assert "dkim-key" not in volumes


def test_the_example_applies(api: Api, emulator: Cluster) -> None:
    import yaml

    from support.paths import ROOT

    [relay] = [d for d in yaml.safe_load_all((ROOT / "examples" / "dkim.yaml").read_text()) if d]
    relay["metadata"]["namespace"] = "example"
    emulator.create(relay)
    run(api, emulator, "example")
    shown = status(emulator, "example")["dkim"]
    assert [r["name"] for r in shown["records"]] == ["relay2026._domainkey.example.com"]
    assert shown["signing"] == "Pending" and emulator.get("secrets", "example", SECRET) is not None
