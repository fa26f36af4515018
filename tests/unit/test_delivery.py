"""The Delivering condition's decisions, and that reporting it writes nothing while nothing changes."""

from __future__ import annotations

import pytest

from mailrelay.api import conditions as cond
from mailrelay.controller import delivery
from mailrelay.controller import status as st

# Postfix's own wording of deferral reasons (smtp(8), smtp_sasl_glue.c, tls_client.c).
REASONS = {
    "SASL authentication failed; server smtp.example.com[192.0.2.1] said: 535 5.7.8 Authentication credentials "
    "invalid": cond.AUTH_FAILED,
    "TLS is required, but was not offered by host smtp.example.com[192.0.2.1]": cond.TLS_FAILED,
    "Server certificate not verified": cond.TLS_FAILED,
    "Cannot start TLS: handshake failure": cond.TLS_FAILED,
    "connect to smtp.example.com[192.0.2.1]:587: Connection refused": cond.DEFERRED,
    "host smtp.example.com[192.0.2.1] said: 451 4.3.0 Try again later (in reply to end of DATA command)": cond.DEFERRED,
}
IDLE = delivery.Sample(dict.fromkeys(delivery.QUEUES, 0), None, 10, 0)
STUCK = delivery.Sample({**dict.fromkeys(delivery.QUEUES, 0), "deferred": 2, "active": 1}, 1000.0, 12, 2)


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_deferral_reasons_are_classified(reason: str) -> None:
    assert delivery.classify(reason) == REASONS[reason]


def test_reasons_are_read_from_postfix_log_lines() -> None:
    log = (
        "Nov 26 01:33:57 mail postfix/smtp[1]: BD9: to=<x@example.org>, relay=h[192.0.2.1]:587, delay=0.04, "
        "delays=0.02/0.01/0.01/0, dsn=4.7.8, status=deferred (SASL authentication failed; server h said: 535 no)\n"
        "Nov 26 01:33:58 mail postfix/smtp[1]: C25: to=<y@example.org>, relay=h[192.0.2.1]:587, status=sent "
        "(250 OK)\n"
    )
    assert delivery.deferral_reasons(log) == ["SASL authentication failed; server h said: 535 no"]


def test_the_newest_reason_decides_and_pods_are_summed() -> None:
    health = delivery.assess(
        [STUCK, IDLE, STUCK], pods=3, reasons=["Connection refused", "SASL authentication failed; 535"]
    )
    assert (health.status, health.reason) == ("False", cond.AUTH_FAILED)
    assert health.queue == {"active": 2, "deferred": 4, "hold": 0, "incoming": 0, "oldestMessageAge": "under 17m"}
    assert delivery.assess([STUCK], pods=1).reason == cond.DEFERRED


def test_silent_pods_and_no_pods_are_unknown_not_healthy() -> None:
    assert (delivery.assess([IDLE], pods=2).status, delivery.assess([IDLE], pods=2).reason) == (
        "Unknown",
        cond.NO_METRICS,
    )
    assert delivery.assess([], pods=0).reason == cond.STOPPED
    assert delivery.assess([IDLE], pods=1).status == "True"


def test_the_same_health_twice_writes_nothing_and_a_change_writes() -> None:
    up = cond.Assessment(True, cond.AVAILABLE, "1 of 1 pods ready")
    first = st.build(
        assessment=up,
        generation=2,
        previous=None,
        now="2026-01-01T00:00:00Z",
        delivery=delivery.assess([STUCK], pods=1),
    )
    again = st.build(
        assessment=up,
        generation=2,
        previous=first,
        now="2026-01-01T00:05:00Z",
        delivery=delivery.assess([STUCK], pods=1),
    )
    assert not st.differs(again, first)
    # Passes that do not ask the pods (watch events) keep what the last resync reported.
    event_pass = st.build(assessment=up, generation=2, previous=first, now="2026-01-01T00:06:00Z")
    assert not st.differs(event_pass, first)
    flowing = st.build(
        assessment=up,
        generation=2,
        previous=first,
        now="2026-01-01T00:07:00Z",
        delivery=delivery.assess([IDLE], pods=1),
    )
    assert st.differs(flowing, first)
    condition = st.condition(flowing, cond.DELIVERING)
    assert condition is not None and condition["lastTransitionTime"] == "2026-01-01T00:07:00Z"
    assert flowing["queue"]["oldestMessageAge"] == ""  # present and empty: a merge patch clears the old bound
