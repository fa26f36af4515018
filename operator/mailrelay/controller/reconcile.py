"""One pass for one relay: gather (observe) → decide → execute, the same code whatever asked for it.

Level-based: the pass looks only at what is (the relay, its Secrets, its children) and never at what
changed, so every trigger runs the same code, and a pass over a relay that is already right makes no
request at all (everything it reads is in the caches, but a referenced Secret).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mailrelay.api import dkim
from mailrelay.api.spec import MailRelay, SpecError
from mailrelay.controller import dkim_keys
from mailrelay.controller.decide import Inputs, Plan, decide
from mailrelay.controller.delivery import Health
from mailrelay.controller.execute import Outcome, Writer, execute
from mailrelay.controller.oauth import TokenKeeper, Tokens
from mailrelay.controller.observe import Key, Memory, Observed, Reader, observe
from mailrelay.render.relay import Rendered, render_relay

log = logging.getLogger(__name__)
RENDERS_KEPT = 4096


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Renders:
    """Rendered relays by (uid, generation, Secret versions, image): a settled relay is rendered once."""

    kept: OrderedDict[tuple[str, int, str, str], Rendered] = field(default_factory=OrderedDict)

    def render(self, relay: MailRelay, secret_version: str) -> Rendered:
        key = (relay.uid or "", relay.generation or 0, secret_version, relay.spec.image)
        found = self.kept.get(key)
        if found is None:
            found = self.kept[key] = render_relay(relay, secret_version)
            while len(self.kept) > RENDERS_KEPT:
                self.kept.popitem(last=False)
        else:
            self.kept.move_to_end(key)
        return found


def secret_version(seen: Observed) -> str:
    """The login Secret's identity (uid and resourceVersion), so a rotation rolls the pods.

    Identity, not content: the version ends up in status.configHash and the pod template, which anyone
    who may read the relay sees; a digest of the password would let them test guesses.
    """
    meta = (seen.secret or {}).get("metadata") or {}
    return f"{meta.get('uid', '')}/{meta.get('resourceVersion', '')}" if seen.secret is not None else ""


@dataclass
class Pass:
    """What a pass saw and did: for the log, the metrics and the tests."""

    seen: Observed
    plan: Plan
    outcome: Outcome

    @property
    def again_in(self) -> float | None:
        """When the relay wants another pass whatever happens meanwhile (its access token's refresh)."""
        return self.plan.tokens.next_check if self.plan.tokens else None


@dataclass
class TokenStore:
    """The token step's reads (by name, past the caches) and writes (its own Secret, the user's)."""

    reader: Reader
    writer: Writer

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.reader.read(kind, namespace, name)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.writer.create(obj)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.writer.apply(obj)


def plan(
    seen: Observed,
    renders: Renders,
    clock: str,
    generate: dkim_keys.Generate | None = None,
    tokens: Tokens | None = None,
    admit: Callable[[], bool] | None = None,
    require_grant: bool = True,
) -> Plan:
    """Prepare the DKIM keys (the one step that may make new material), render once, decide; a plan
    that rolls pods another operator version rendered asks `admit` for a slot, and waits without one."""
    keys = dkim_keys.KeyState()
    rendered = None
    if seen.relay is not None:
        annotations = seen.body["metadata"].get("annotations") or {}
        keys = dkim_keys.prepare(seen.relay, seen.dkim_secret, annotations, generate or dkim.generate, require_grant)
        if keys.problem is None:
            version = secret_version(seen) + (f"/dkim:{keys.version}" if keys.version else "")
            try:
                rendered = renders.render(seen.relay, version)
            except SpecError as exc:  # UnsafeValue: never render what validation missed
                seen.relay, seen.problems, keys = None, list(exc.problems), dkim_keys.KeyState()
    inputs = Inputs(
        seen, keys, rendered, tokens or Tokens(status=seen.status.get("oauth2")), require_grant=require_grant
    )
    decided = decide(inputs, clock)
    if decided.gated and admit is not None and not admit():
        decided = decide(replace(inputs, waiting=True), clock)
    return decided


def run(
    reader: Reader,
    writer: Writer,
    memory: Memory,
    renders: Renders,
    body: dict[str, Any],
    *,
    default_image: str,
    instance: str,
    clock: str | None = None,
    health: Health | None = None,
    keeper: TokenKeeper | None = None,
    admit: Callable[[], bool] | None = None,
    require_grant: bool = True,
) -> Pass:
    """One pass over the relay `body` (as the cache holds it); ApiError propagates for the queue's backoff."""
    seen = observe(reader, memory, body, default_image, health)
    tokens = None
    if seen.relay is not None:  # the OAuth2 token step makes its own requests (controller.oauth)
        tokens = (keeper or TokenKeeper()).keep(TokenStore(reader, writer), seen.relay, seen.status, require_grant)
    decided = plan(seen, renders, clock or now(), tokens=tokens, admit=admit, require_grant=require_grant)
    for kind, reason, message in tokens.events if tokens else []:
        writer.post_event(seen.body, kind, reason, message, instance)
    outcome = execute(writer, memory, seen, decided, instance)
    if outcome.done or outcome.status_written:
        log.info("reconciled %s/%s: %s; %s", *seen.key, decided.assessment.reason, ", ".join(outcome.done) or "status")
    return Pass(seen, decided, outcome)


__all__ = ["Key", "Pass", "Renders", "now", "plan", "run"]
