"""Who may use a Secret: the annotation a referenced Secret must carry (api.secret.grant_problem)."""

from __future__ import annotations

from typing import Any

import pytest

from mailrelay.api.names import SECRET_GRANT_ANNOTATION
from mailrelay.api.secret import grant_problem, granted_relays
from mailrelay.controller.settings import Settings, SettingsError


def secret(annotation: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "login", "namespace": "apps"}
    if annotation is not None:
        meta["annotations"] = {SECRET_GRANT_ANNOTATION: annotation}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"password": "c2VjcmV0"}}


@pytest.mark.parametrize(
    ("annotation", "relay", "allowed"),
    [
        ("relay", "relay", True),
        ("a, relay ,b", "relay", True),
        ("*", "anyone", True),
        ("other", "relay", False),
        ("relay-2", "relay", False),  # names, not prefixes
        ("", "relay", False),
        (None, "relay", False),
        (["relay"], "relay", False),  # not a string: no grant
    ],
)
def test_only_the_named_relays_may_use_a_secret(annotation: Any, relay: str, allowed: bool) -> None:
    assert (grant_problem(secret(annotation), relay, "spec.relay.authSecretRef") is None) is allowed


def test_the_refusal_says_how_to_grant_and_nothing_about_the_content() -> None:
    problem = grant_problem(secret(), "relay", "spec.relay.authSecretRef")
    assert problem == (
        f"Secret login (spec.relay.authSecretRef) has no annotation {SECRET_GRANT_ANNOTATION}: whoever may edit "
        "the Secret decides which relays use it; to allow this one: kubectl annotate --overwrite secret login "
        f"{SECRET_GRANT_ANNOTATION}=relay (a comma-separated list of names, or *)"
    )
    listed = grant_problem(secret("billing,ops"), "relay", "spec.dkim.keySecretRef")
    assert listed is not None and "lets only 'billing, ops' use it" in listed
    assert f"{SECRET_GRANT_ANNOTATION}=billing,ops,relay " in listed  # the command keeps who was there
    assert "c2VjcmV0" not in problem + listed  # the content is never looked at


def test_a_huge_annotation_is_quoted_in_bounded_form() -> None:
    problem = grant_problem(secret(",".join(f"relay-{n}" for n in range(100_000))), "x", "spec.relay.authSecretRef")
    assert problem is not None and len(problem) < 600
    assert len(granted_relays(secret("a,,b, ,c"))) == 3


def test_the_operator_requires_grants_unless_told_otherwise() -> None:
    assert Settings.from_environment({}).require_secret_grant is True
    assert Settings.from_environment({"MAILRELAY_REQUIRE_SECRET_GRANT": "false"}).require_secret_grant is False
    with pytest.raises(SettingsError, match="MAILRELAY_REQUIRE_SECRET_GRANT"):
        Settings.from_environment({"MAILRELAY_REQUIRE_SECRET_GRANT": "sometimes"})
