"""The smarthost Secret: what is refused before a pod could crash on it, and what reaches the status."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mailrelay.api import conditions as cond
from mailrelay.api.secret import SecretProblem, credentials
from mailrelay.controller.reconcile import secret_version
from mailrelay.render.relay import config_hash

from support.fake_api import FakeApi
from support.one_pass import one_pass
from support.samples import make_relay, relay_object


def _secret(uid: str = "u-1", version: str = "7", **values: str) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "smarthost",
            "namespace": "apps",
            "uid": uid,
            "resourceVersion": version,
            "annotations": {"mailrelay.dev/relays": "relay"},
        },
        "data": data,
    }


SPEC = {"mailFromFQDN": "a.example", "relay": {"host": "smtp.example.net", "authSecretRef": {"name": "smarthost"}}}
RELAY = make_relay(SPEC)


def _secret_version(secret: dict[str, Any]) -> tuple[str, cond.Assessment | None]:
    """What a pass makes of this Secret: the version that goes into the config hash, or the problem."""
    api = FakeApi()
    api.put(relay_object(SPEC))
    api.objects[("Secret", "apps", "smarthost")] = secret  # as given: its uid and resourceVersion
    done = one_pass(api, api.get("MailRelay", "apps", "relay") or {})
    if done.plan.assessment.reason in (cond.SECRET_INVALID, cond.SECRET_INCOMPLETE, cond.SECRET_NOT_FOUND):
        return "", done.plan.assessment
    return secret_version(done.seen), None


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"username": "user:name", "password": "p"}, "username must not contain ':'"),
        ({"username": "user\nname", "password": "p"}, "username must not contain"),
        ({"username": "u", "password": "line one\nline two"}, "password must not contain a line break"),
        ({"username": "u", "password": "nul\x00"}, "password must not contain"),
    ],
)
def test_a_secret_that_would_corrupt_the_password_map_is_invalid(values: dict[str, str], problem: str) -> None:
    with pytest.raises(SecretProblem, match=problem) as error:
        credentials(_secret(**values))
    assert not error.value.incomplete
    version, assessment = _secret_version(_secret(**values))
    assert version == "" and assessment is not None
    assert assessment.reason == cond.SECRET_INVALID and assessment.stalled
    assert values["password"] not in assessment.message


def test_trailing_newlines_and_string_data_are_read_as_the_entrypoint_reads_them() -> None:
    login = credentials({"stringData": {"username": "relay-user\n", "password": "s3cret pass\n"}})
    assert (login.username, login.password) == ("relay-user", "s3cret pass")
    assert "s3cret" not in repr(login)
    with pytest.raises(SecretProblem, match="lacks a non-empty password") as error:
        credentials({"data": {"username": base64.b64encode(b"u").decode()}})
    assert error.value.incomplete
    with pytest.raises(SecretProblem, match="key password is not base64"):
        credentials({"data": {"username": "dQ==", "password": "not base64!"}})


def test_the_config_hash_follows_the_secret_identity_not_its_content() -> None:
    """status.configHash is public to relay readers: it must not let anyone test password guesses."""
    first, _ = _secret_version(_secret(username="u", password="hunter2"))
    other_password, _ = _secret_version(_secret(username="u", password="letmein"))
    rotated, _ = _secret_version(_secret(version="8", username="u", password="hunter2"))
    assert first == other_password == "u-1/7"  # same object version: the content plays no part
    assert config_hash(RELAY, first) != config_hash(RELAY, rotated)  # a rotation still rolls the pods
