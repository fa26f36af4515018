"""GitOps health: the statuses the operator writes mean the same to kstatus (Flux) and to Argo CD."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from lupa import LuaRuntime

from mailrelay.api import conditions as cond
from mailrelay.controller import delivery
from mailrelay.controller import status as st

from support.kstatus import kstatus
from support.paths import ROOT
from support.wait import present

HEALTH = yaml.safe_load((ROOT / "manifests/argocd/argocd-cm-health.yaml").read_text())["data"][
    "resource.customizations.health.mailrelay.dev_MailRelay"
]
ARGO_FOR_KSTATUS = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded"}


def argo_check(obj: dict[str, Any]) -> Any:
    lua = LuaRuntime(unpack_returned_tuples=True)
    check = lua.execute(f"return function(obj) {HEALTH} end")
    return check(lua.table_from(obj, recursive=True))


def argo_health(obj: dict[str, Any]) -> str:
    return str(argo_check(obj)["status"])


ASSESSMENTS = {
    "available": (cond.Assessment(True, cond.AVAILABLE, "2 of 2 pods ready"), "Current"),
    "scaled to zero": (cond.Assessment(True, cond.SCALED_TO_ZERO, "replicas is 0"), "Current"),
    "rolling out": (cond.Assessment(False, cond.ROLLING_OUT, "1 of 2 ready", reconciling=True), "InProgress"),
    "invalid spec": (cond.Assessment(False, cond.INVALID_SPEC, "spec.x: bad", stalled=True), "Failed"),
    "service conflict": (cond.Assessment(False, cond.CONFLICT, "Service mail exists", stalled=True), "Failed"),
    "secret missing": (cond.Assessment(False, cond.SECRET_NOT_FOUND, "no Secret", stalled=True), "Failed"),
}


@pytest.mark.parametrize("case", sorted(ASSESSMENTS))
def test_argo_cd_and_kstatus_agree_on_every_status_the_operator_writes(case: str) -> None:
    assessment, expected = ASSESSMENTS[case]
    status = st.build(assessment=assessment, generation=3, previous=None, now="2026-01-01T00:00:00Z")
    obj = {"metadata": {"generation": 3}, "status": status}
    assert kstatus(obj) == expected
    assert argo_health(obj) == ARGO_FOR_KSTATUS[expected]
    assert (expected == "Current") == (present(st.ready_condition(status))["status"] == "True")


@pytest.mark.parametrize("status", [None, {"observedGeneration": 2, "conditions": []}])
def test_an_unobserved_generation_is_progressing(status: dict[str, Any] | None) -> None:
    obj: dict[str, Any] = {"metadata": {"generation": 3}}
    if status is not None:
        obj["status"] = status
    assert kstatus(obj) == "InProgress"
    assert argo_health(obj) == "Progressing"


DELIVERY = {
    "flowing": delivery.Health("True", cond.FLOWING, "no mail is waiting for a retry"),
    "auth refused": delivery.Health("False", cond.AUTH_FAILED, "3 messages deferred: SASL authentication failed"),
    "deferred": delivery.Health("False", cond.DEFERRED, "1 messages deferred"),
    "no metrics": delivery.Health("Unknown", cond.NO_METRICS, "1 of 1 relay pods did not answer"),
}


@pytest.mark.parametrize("case", sorted(DELIVERY))
@pytest.mark.parametrize("ready", sorted(ASSESSMENTS))
def test_delivery_health_changes_neither_tools_verdict(case: str, ready: str) -> None:
    """Delivering is reported beside Ready, never instead of it: both tools say what Ready says."""
    assessment, expected = ASSESSMENTS[ready]
    status = st.build(
        assessment=assessment, generation=3, previous=None, now="2026-01-01T00:00:00Z", delivery=DELIVERY[case]
    )
    obj = {"metadata": {"generation": 3}, "status": status}
    assert kstatus(obj) == expected
    result = argo_check(obj)
    assert result["status"] == ARGO_FOR_KSTATUS[expected]
    if expected == "Current" and DELIVERY[case].status == "False":
        assert f"mail is not leaving: {DELIVERY[case].reason}" in result["message"]
