"""The MailRelay status: what is true now, in conditions that kstatus (Flux, Argo CD, kubectl wait) reads.

Conditions follow the kstatus convention: `Ready` summarises, `Reconciling` is True while work is
under way, `Stalled` is True when the relay cannot progress without a change from a person. Each
carries the generation it describes; `lastTransitionTime` only moves when the status flips.
"""

from __future__ import annotations

from typing import Any

from mailrelay.api.conditions import (
    AVAILABLE,
    DELIVERING,
    NONE,
    READY,
    RECONCILING,
    REFUSED_FIELD,
    ROLLING_OUT,
    SCALED_TO_ZERO,
    STALLED,
    Assessment,
)
from mailrelay.api.names import CONFIG_HASH_ANNOTATION
from mailrelay.controller.delivery import Health


def rollout(deployment: dict[str, Any] | None, replicas: int, config_hash: str) -> Assessment:
    """Is the live workload (Deployment or StatefulSet) running the current configuration with every
    wanted pod ready?"""
    if deployment is None:
        return Assessment(False, ROLLING_OUT, "waiting for the workload to be created", reconciling=True)
    kind = deployment.get("kind", "Deployment")
    meta, status = deployment.get("metadata", {}), deployment.get("status") or {}
    template_hash = (
        deployment.get("spec", {})
        .get("template", {})
        .get("metadata", {})
        .get("annotations", {})
        .get(CONFIG_HASH_ANNOTATION)
    )
    if template_hash != config_hash:
        return Assessment(
            False, ROLLING_OUT, f"the {kind} does not have the current configuration yet", reconciling=True
        )
    if status.get("observedGeneration", 0) < meta.get("generation", 1):
        return Assessment(
            False, ROLLING_OUT, f"waiting for the {kind} controller to see the new spec", reconciling=True
        )
    updated, ready = status.get("updatedReplicas", 0), status.get("readyReplicas", 0)
    total = status.get("replicas", 0)
    if updated < replicas or ready < replicas or total > replicas:
        return Assessment(
            False,
            ROLLING_OUT,
            f"{ready} of {replicas} pods ready, {updated} updated, {total} running",
            reconciling=True,
        )
    if replicas == 0:
        return Assessment(True, SCALED_TO_ZERO, "replicas is 0: the relay is stopped")
    return Assessment(True, AVAILABLE, f"{ready} of {replicas} pods ready with the current configuration")


def _condition(
    kind: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    previous: dict[str, dict[str, Any]],
    now: str,
) -> dict[str, Any]:
    text = status if isinstance(status, str) else "True" if status else "False"
    before = previous.get(kind)
    since = (
        before["lastTransitionTime"]
        if before and before.get("status") == text and before.get("lastTransitionTime")
        else now
    )
    condition = {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def build(
    *,
    assessment: Assessment,
    generation: int | None,
    previous: dict[str, Any] | None,
    now: str,
    deployment: dict[str, Any] | None = None,
    config_hash: str | None = None,
    endpoint: str | None = None,
    selector: str | None = None,
    refused: str = "",
    delivery: Health | None = None,
    extra: tuple[tuple[str, bool, str, str], ...] = (),
) -> dict[str, Any]:
    """The whole status object; `previous` is the current status, to keep transition times.

    `extra` conditions (type, status, reason, message) follow the others, e.g. RefreshTokenExpiring.

    `delivery` is what the relay's metrics said (the resync asks); without it the last known
    Delivering condition and queue are kept as they are.
    """
    before: dict[str, dict[str, Any]] = {
        str(c.get("type")): c for c in (previous or {}).get("conditions") or [] if isinstance(c, dict)
    }
    a = assessment
    status: dict[str, Any] = {
        "conditions": [
            _condition(READY, a.ready, a.reason, a.message, generation, before, now),
            _condition(
                RECONCILING,
                a.reconciling,
                a.reason if a.reconciling else NONE,
                a.message if a.reconciling else "",
                generation,
                before,
                now,
            ),
            _condition(
                STALLED,
                a.stalled,
                a.reason if a.stalled else NONE,
                a.message if a.stalled else "",
                generation,
                before,
                now,
            ),
        ],
    }
    if delivery is not None:
        status["conditions"].append(
            _condition(DELIVERING, delivery.status, delivery.reason, delivery.message, generation, before, now)
        )
        status["queue"] = delivery.queue
    else:
        if DELIVERING in before:
            status["conditions"].append(before[DELIVERING])
        if "queue" in (previous or {}):
            status["queue"] = (previous or {})["queue"]
    for kind, value, reason, message in extra:
        status["conditions"].append(_condition(kind, value, reason, message, generation, before, now))
    if generation is not None:
        status["observedGeneration"] = generation
    dep_status = (deployment or {}).get("status") or {}
    status["replicas"] = int(dep_status.get("replicas", 0))
    status["readyReplicas"] = int(dep_status.get("readyReplicas", 0))
    # Keep the last known hash and endpoint when this pass could not compute them (invalid spec).
    status["configHash"] = config_hash if config_hash is not None else (previous or {}).get("configHash", "")
    status["endpoint"] = endpoint if endpoint is not None else (previous or {}).get("endpoint", "")
    # The scale subresource's labelSelectorPath: HPA and KEDA count the pods this selects.
    status["selector"] = selector if selector is not None else (previous or {}).get("selector", "")
    if refused or (previous or {}).get(REFUSED_FIELD):
        status[REFUSED_FIELD] = refused or None  # None removes it (merge patch) once the child is accepted
    return status


def differs(new: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether writing `new` would change anything the status shows."""
    current = current or {}
    return any(current.get(key) != value for key, value in new.items())


def condition(status: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == kind), None)


def ready_condition(status: dict[str, Any] | None) -> dict[str, Any] | None:
    return condition(status, READY)
