"""The DKIM key Secret: checked when the user brings it, generated and kept when the operator owns it.

`prepare` looks at the live Secret and says what to write (the pass writes it before the children):
the operator creates its Secret with a POST, which fails when the name is taken, and changes it only
after checking its controller owner reference, with the uid and resourceVersion it checked as
preconditions: a Secret that is not the relay's is never written, even if it appears meanwhile.
A key is generated once and kept; a new one is made only when the relay's ROTATE_ANNOTATION gets a
value the Secret was not made for. Keys go nowhere but the Secret: not to logs, events or status.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mailrelay.api import conditions as cond
from mailrelay.api import dkim
from mailrelay.api.secret import grant_problem
from mailrelay.api.spec import MailRelay
from mailrelay.controller.apply import describe_owner, owned_by
from mailrelay.render.relay import dkim_secret_name, labels, owner_reference

ROTATE_ANNOTATION = "mailrelay.dev/rotate-dkim-key"  # on the MailRelay: any new value rotates the key
ROTATION_ANNOTATION = "mailrelay.dev/dkim-rotation"  # on the Secret: the value its keys were made for

KEY_NOT_FOUND = "DkimKeyNotFound"
KEY_INVALID = "DkimKeyInvalid"
SECRET_CONFLICT = "DkimSecretConflict"

# status.dkim.signing
ACTIVE, PENDING, STOPPED, BLOCKED = "Active", "Pending", "Stopped", "Blocked"


Generate = Callable[[str, int], bytes]  # (algorithm, RSA bits) → PEM private key


@dataclass(frozen=True)
class KeyWrite:
    """The relay's own key Secret to create (POST: fails if the name is taken) or apply (with preconditions)."""

    action: Literal["create", "apply"]
    obj: dict[str, Any]


@dataclass
class KeyState:
    """What the relay signs with: a version for the config hash, the records to publish, or a problem;
    and the Secret write that makes it so, with the Event to post once it is written."""

    secret: str | None = None
    version: str = ""
    records: list[dkim.Record] = field(default_factory=list)
    problem: cond.Assessment | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    write: KeyWrite | None = None


def prepare(
    relay: MailRelay,
    live: dict[str, Any] | None,
    annotations: dict[str, str],
    generate: Generate = dkim.generate,
    require_grant: bool = True,
) -> KeyState:
    """What the relay's DKIM keys are, given its key Secret as read (`live`); new keys only from `generate`.
    A Secret named in keySecretRef must name the relay (api.secret.grant_problem) unless not required."""
    spec = relay.spec.dkim
    name = dkim_secret_name(relay)
    if spec is None or name is None:
        return KeyState()
    if spec.key_secret:
        if live is None:
            files = " and ".join(dkim.needed(spec).values())
            return KeyState(
                name,
                problem=cond.Assessment(
                    False,
                    KEY_NOT_FOUND,
                    f"Secret {name} (spec.dkim.keySecretRef) does not exist; create it with the key(s) {files}",
                    stalled=True,
                ),
            )
        refused = grant_problem(live, relay.name, "spec.dkim.keySecretRef") if require_grant else None
        if refused:  # before the keys are looked at: nothing of them reaches the status
            return KeyState(name, problem=cond.Assessment(False, cond.SECRET_NOT_GRANTED, refused, stalled=True))
        return _checked(relay, name, dkim.decode_secret(live), [])
    if live is not None and not owned_by(live, relay.uid or ""):
        return KeyState(
            name,
            problem=cond.Assessment(
                False,
                SECRET_CONFLICT,
                f"Secret {name} already exists and is not this relay's "
                f"(owned by {describe_owner(live)}); left untouched. Remove it, or name it in spec.dkim.keySecretRef "
                "to sign with its keys",
                stalled=True,
            ),
        )
    wanted = annotations.get(ROTATE_ANNOTATION, "")
    if live is None:
        data = {file: generate(alg, spec.rsa_bits) for alg, file in dkim.needed(spec).items()}
        state = _checked(relay, name, data, [("Normal", "DkimKeyCreated", _news("generated", name))])
        state.write = KeyWrite("create", _secret(relay, name, data, wanted))
        return state
    data = dkim.decode_secret(live)
    recorded = ((live.get("metadata") or {}).get("annotations") or {}).get(ROTATION_ANNOTATION, "")
    if wanted and wanted != recorded:
        fresh = {file: generate(alg, spec.rsa_bits) for alg, file in dkim.needed(spec).items()}
        state = _checked(relay, name, fresh, [("Normal", "DkimKeyRotated", _news("rotated", name))])
        state.write = KeyWrite("apply", _secret(relay, name, {**data, **fresh}, wanted, live))
        return state
    missing = {file: generate(alg, spec.rsa_bits) for alg, file in dkim.needed(spec).items() if not data.get(file)}
    if missing:  # keyType became Ed25519: add that key, keep the RSA key already published
        data = {**data, **missing}
        state = _checked(relay, name, data, [("Normal", "DkimKeyCreated", _news("generated", name))])
        state.write = KeyWrite("apply", _secret(relay, name, data, recorded, live))
        return state
    return _checked(
        relay,
        name,
        data,
        [],
        hint=f"; set the annotation {ROTATE_ANNOTATION} on the MailRelay to a new value to replace it with a new key",
    )


def _news(done: str, name: str) -> str:
    return f"{done} the DKIM key in Secret {name}; publish the TXT record(s) in status.dkim.records"


def _checked(
    relay: MailRelay, name: str, data: dict[str, bytes], events: list[tuple[str, str, str]], hint: str = ""
) -> KeyState:
    assert relay.spec.dkim is not None
    try:
        records = dkim.records(relay.spec.dkim, data, name)
    except dkim.KeyProblem as exc:
        return KeyState(name, problem=cond.Assessment(False, KEY_INVALID, f"{exc}{hint}", stalled=True))
    return KeyState(name, dkim.version(relay.spec.dkim, data), records, events=events)


def _secret(
    relay: MailRelay, name: str, data: dict[str, bytes], rotation: str, live: dict[str, Any] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": relay.namespace,
        "labels": labels(relay),
        "annotations": {ROTATION_ANNOTATION: rotation},
        "ownerReferences": [owner_reference(relay)],
    }
    if live is not None:  # preconditions: exactly the object whose owner was checked, unchanged since
        meta["uid"] = live["metadata"]["uid"]
        meta["resourceVersion"] = live["metadata"]["resourceVersion"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())},
    }


def status(state: KeyState, relay: MailRelay, assessment: cond.Assessment) -> dict[str, Any] | None:
    """status.dkim: the records to publish and whether the relay signs with them; None without DKIM."""
    if relay.spec.dkim is None:
        return None
    if assessment.stalled:
        signing = BLOCKED
    elif assessment.reason == cond.SCALED_TO_ZERO:
        signing = STOPPED
    else:
        signing = ACTIVE if assessment.ready else PENDING
    return {
        "domain": relay.spec.dkim.domain,
        "keySecret": state.secret or "",
        "signing": signing,
        "records": [r.as_status() for r in state.records],
    }
