"""Platform smarthosts on real Postfix, both tiers: tenant relays log in to one egress tier, which holds
the platform's login and relays to the smarthost (an aiosmtpd sink that requires that login).

Every instance runs the image's entrypoint with the files the operator renders; the egress tier's
logins and sender gate are the image's own programs. What is checked: two tenants deliver with
their own domains; a tenant's login used by hand cannot send as the other tenant (envelope or
header) nor at all once revoked; the platform login reaches the smarthost and no tenant file.
"""

from __future__ import annotations

import shutil
import smtplib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailrelay.api import egress_keys
from mailrelay.api import smarthost as api
from mailrelay.gate import tenants as gate
from mailrelay.render import egress

from support import mail
from support.egress_harness import OPERATOR_NAMESPACE, EgressPostfix, login, tenant, tenant_relay
from support.mail import POD, message, send, wait_for_log
from support.postfix_harness import HarnessPostfix
from support.samples import make_relay
from support.smtp_sink import Sink, free_port

PLATFORM = ("platform@example.com", "platform-secret-7Qx2")
ROTATED = ("platform@example.com", "platform-secret-rotated-9Kw4")
ADMITTED = {"mail.example.com/smarthost": "company"}


def smarthost_object(sink: Sink, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailrelay.dev/v1alpha1",
        "kind": "ClusterSmarthost",
        "metadata": {"name": "company", "uid": "0f6a1c2e-0000-4000-8000-000000000001", "generation": 1},
        "spec": {
            "host": "127.0.0.1",
            "port": sink.port,
            "tls": "None",
            "authSecretRef": {"name": "company-login"},
            "allowedNamespaces": [
                {"namespaceSelector": {"matchLabels": ADMITTED}, "senderDomains": ["{namespace}.apps.example.com"]}
            ],
            **spec,
        },
    }


def tenant_spec(namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "mailFromFQDN": f"{namespace}.apps.example.com",
        "allowedNetworks": ["127.0.0.4/30"],
        "smarthostRef": {"name": "company"},
        **extra,
    }


@dataclass
class Platform:
    sink: Sink
    smarthost: api.ClusterSmarthost
    keys: dict[str, bytes]
    egress: EgressPostfix
    relays: dict[str, Any]  # namespace → the MailRelay as parsed
    tenants: dict[str, HarnessPostfix]  # namespace → its running relay
    new_egress: Callable[..., EgressPostfix]  # another egress instance (a replica, a rolled pod)

    def admitted(self, *namespaces: str) -> tuple[gate.Tenant, ...]:
        return tuple(tenant(self.relays[ns], self.smarthost, ADMITTED) for ns in namespaces)


@pytest.fixture
def build(start_postfix: Callable[..., Any], sinks: list[Sink]) -> Iterator[Callable[..., Platform]]:
    """Make the platform: the smarthost sink (started or not), the egress tier, the two tenant relays."""
    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-egress-"))
    workdir.chmod(0o755)  # Postfix's daemons run as `postfix`: not under pytest's root-only tmp_path
    made: list[EgressPostfix] = []

    def make(
        sink_started: bool = True, credentials: tuple[str, str] = PLATFORM, handoff_port: int = 0, **spec: Any
    ) -> Platform:
        sink = Sink(credentials=credentials)
        sinks.append(sink)
        if sink_started:
            sink.start()
        smarthost = api.parse(smarthost_object(sink, **spec))
        keys = egress_keys.generate(egress.hostname(smarthost.name, OPERATOR_NAMESPACE))
        relays = {
            ns: make_relay(tenant_spec(ns), name="mail", namespace=ns, uid=f"0f6a1c2e-0000-4000-8000-00000000010{i}")
            for i, ns in enumerate(("shop", "web"))
        }
        everyone = tuple(tenant(r, smarthost, ADMITTED) for r in relays.values())

        def new_egress(password: str = PLATFORM[1], handoff_port: int | None = None, port: int = 0) -> EgressPostfix:
            instance = EgressPostfix(
                smarthost,
                everyone,
                workdir / f"egress{len(made)}",
                keys=keys,
                port=port or free_port(),
                handoff_port=handoff_port,
                secret={"username": PLATFORM[0], "password": password},
            )
            made.append(instance)
            instance.start()
            return instance

        first = new_egress(handoff_port=handoff_port or None)
        tenants = {
            ns: start_postfix(tenant_relay(relay, smarthost, first, keys), secret=login(relay, keys))
            for ns, relay in relays.items()
        }
        return Platform(sink, smarthost, keys, first, relays, tenants, new_egress)

    yield make
    for instance in made:
        instance.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def platform(build: Callable[..., Platform]) -> Platform:
    return build()


def test_two_tenants_deliver_through_one_egress_tier_with_their_own_domains(platform: Platform) -> None:
    for ns, instance in platform.tenants.items():
        send(instance, f"app@pod.{ns}.svc.cluster.local", message(f"Shop <app@pod.{ns}.svc.cluster.local>"))
    received = platform.sink.wait_for(2, timeout=60)
    assert sorted(r.mail_from for r in received) == ["app@shop.apps.example.com", "app@web.apps.example.com"]
    assert sorted(str(r.header("From")) for r in received) == [
        "Shop <app@shop.apps.example.com>",
        "Shop <app@web.apps.example.com>",
    ]
    assert {r.auth for r in received} == {PLATFORM}  # the smarthost saw the platform's login only
    log = platform.egress.log()
    assert "sasl_username=shop.mail@mailrelay" in log and "sasl_username=web.mail@mailrelay" in log
    tls = wait_for_log(platform.tenants["shop"], "TLS connection established")
    assert "Verified TLS connection established" in tls  # the pinned fingerprint matched


def by_hand(platform: Platform, credentials: dict[str, str] | None, sender: str, header_from: str) -> tuple[int, str]:
    """Speak SMTP to the egress tier as a tenant who took its relay's login: (reply code, text)."""
    return mail.by_hand((platform.egress.listen, platform.egress.port), credentials, sender, header_from)


def test_a_tenants_login_used_by_hand_cannot_send_as_the_other_tenant(platform: Platform) -> None:
    shop = login(platform.relays["shop"], platform.keys)
    code, text = by_hand(platform, shop, "x@web.apps.example.com", "x@web.apps.example.com")
    assert code // 100 == 4 and "not owned by user shop.mail@mailrelay" in text  # the envelope: Postfix
    code, text = by_hand(platform, shop, "x@shop.apps.example.com", "CEO <ceo@web.apps.example.com>")
    assert code // 100 == 4 and "not within the sender domains of shop" in text  # the header: the gate
    code, text = by_hand(platform, shop, "", "MAILER-DAEMON@example.com")
    assert code // 100 == 4 and "From: MAILER-DAEMON@example.com is not within" in text  # bounces too
    code, text = by_hand(platform, shop, "x@sub.shop.apps.example.com", "x@shop.apps.example.com")
    assert code == 250, text  # the control: its own domains (and their subdomains) pass by hand too
    code, text = by_hand(platform, None, "x@shop.apps.example.com", "x@shop.apps.example.com")
    assert code // 100 == 4 and "not logged in" in text  # no login, no relaying
    with pytest.raises(smtplib.SMTPAuthenticationError):
        by_hand(platform, {"username": shop["username"], "password": "guessed"}, "x@shop.apps.example.com", "x")
    platform.sink.wait_for(1, timeout=60)
    time.sleep(1)
    assert [r.mail_from for r in platform.sink.received] == ["x@sub.shop.apps.example.com"]
    assert "status=bounced" not in platform.egress.log()


def wait_reloaded(instance: EgressPostfix, count: int, timeout: float = 30) -> None:
    """Until the egress tier's login watcher has the new tenant list in use."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            f"mailrelay-logins: {count} tenant login(s) in use"
            in instance.output.read_text().split("starting Postfix")[-1]
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"no reload to {count} tenants:\n{instance.output.read_text()[-2000:]}")


def test_a_revoked_tenant_is_cut_off_and_its_mail_held_until_it_is_admitted_again(platform: Platform) -> None:
    """The ConfigMap loses the tenant (one reconcile); the running egress tier drops its login without a
    restart. The tenant's mail waits in its own relay's queue, never bounced, and leaves once it is back."""
    shop, web = platform.tenants["shop"], platform.tenants["web"]
    platform.egress.set_tenants(platform.admitted("web"))
    wait_reloaded(platform.egress, 1)
    held = message("app@pod")
    send(shop, "app@pod", held)
    send(web, "app@pod", message("app@pod"))
    wait_for_log(shop, "SASL authentication failed")
    assert platform.sink.wait_for(1, timeout=60)[0].mail_from == "app@web.apps.example.com"
    assert "status=deferred" in wait_for_log(shop, "status=deferred") and shop.queued() == 1
    with pytest.raises(smtplib.SMTPAuthenticationError):  # by hand too
        by_hand(
            platform,
            login(platform.relays["shop"], platform.keys),
            "x@shop.apps.example.com",
            "x@shop.apps.example.com",
        )
    platform.egress.set_tenants(platform.admitted("shop", "web"))
    wait_reloaded(platform.egress, 2)
    assert shop.postfix("flush").returncode == 0
    received = platform.sink.wait_for(2, timeout=60)
    assert [r.header("Message-ID") for r in received if r.mail_from == "app@shop.apps.example.com"] == [
        held["Message-ID"]
    ]
    assert shop.queued() == 0 and "status=bounced" not in shop.log() + platform.egress.log()


def test_per_namespace_rate_limits_hold_and_defer_the_rest(build: Callable[..., Platform]) -> None:
    """shop may send 5 messages a minute (one egress replica here, so all of it is this replica's
    share); the sixth and later wait in shop's relay; web, with its own count, is not held back."""
    grant = {"namespaceSelector": {"matchLabels": ADMITTED}, "senderDomains": ["{namespace}.apps.example.com"]}
    platform = build(allowedNamespaces=[{**grant, "limits": {"messagesPerMinute": 5}}], egress={"replicas": 1})
    shop, web = platform.tenants["shop"], platform.tenants["web"]
    ids = []
    with smtplib.SMTP(shop.listen, shop.port, source_address=(POD, 0), timeout=30) as smtp:
        for _ in range(8):
            msg = message("app@pod")
            smtp.send_message(msg, from_addr="app@pod", to_addrs=["ops@example.org"])
            ids.append(msg["Message-ID"])
    for _ in range(3):
        send(web, "app@pod", message("app@pod"))
    platform.sink.wait_for(8, timeout=90)
    wait_for_log(shop, "451 4.7.1 shop sent 5 messages in the last minute")
    time.sleep(3)
    by_sender = Counter(r.mail_from for r in platform.sink.received)
    assert by_sender == {"app@shop.apps.example.com": 5, "app@web.apps.example.com": 3}
    assert shop.queued() == 3 and "status=bounced" not in shop.log()


def test_no_trace_of_the_platform_login_in_a_tenant_relay(platform: Platform) -> None:
    """The tenant relays' files (configuration, Secrets, queue, logs) and their processes' environment
    and argument lists; the egress tier's argument lists too (its password map is built by a builtin)."""
    for instance in platform.tenants.values():
        send(instance, "app@pod", message("app@pod"))
    platform.sink.wait_for(2, timeout=60)
    secret = PLATFORM[1].encode()
    for instance in platform.tenants.values():
        for path in [instance.workdir, instance.state]:
            for file in path.rglob("*"):
                if file.is_file() and not file.is_symlink():
                    assert secret not in file.read_bytes(), file
        for pid in process_tree(instance):
            for part in ("environ", "cmdline"):
                assert secret not in Path(f"/proc/{pid}/{part}").read_bytes(), (pid, part)
    egress_pids = process_tree(platform.egress)
    assert egress_pids
    for pid in egress_pids:
        assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes()


def process_tree(instance: HarnessPostfix) -> list[int]:
    """The Postfix master of an instance and every process below it."""
    master = int((instance.queue_dir / "pid" / "master.pid").read_text().split()[0])
    found, todo = [], [master]
    while todo:
        pid = todo.pop()
        found.append(pid)
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.exists():
            todo += [int(c) for c in children.read_text().split()]
    return [pid for pid in found if Path(f"/proc/{pid}").exists()]


def send_many(instance: HarnessPostfix, count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        with smtplib.SMTP(instance.listen, instance.port, source_address=(POD, 0), timeout=30) as smtp:
            for _ in range(min(50, count - len(ids))):
                msg = message("app@pod")
                smtp.send_message(msg, from_addr="app@pod", to_addrs=["ops@example.org"])
                ids.append(msg["Message-ID"])
    return ids


def wait_queued(instance: HarnessPostfix, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deferred = sum(1 for path in (instance.queue_dir / "deferred").rglob("*") if path.is_file())
        if deferred == count and instance.queued() == count:
            return
        time.sleep(0.5)
    raise AssertionError(f"expected {count} deferred messages, {instance.queued()} queued")


def test_500_messages_across_a_roll_of_the_egress_tier_arrive_exactly_once(build: Callable[..., Platform]) -> None:
    """The egress pod holds 500 messages (the smarthost is down) when the platform login is rotated: the
    new pod (new login) starts, the old one's preStop drain hands its queue to it over TLS with the
    hand-off login, the smarthost comes back, and each message arrives once, with the new login."""
    new_port = free_port()
    platform = build(sink_started=False, credentials=ROTATED, handoff_port=new_port)
    old = platform.egress
    ids = send_many(platform.tenants["shop"], 250) + send_many(platform.tenants["web"], 250)
    wait_queued(old, 500)
    assert all(t.queued() == 0 for t in platform.tenants.values())  # all taken by the egress tier
    new = platform.new_egress(password=ROTATED[1], port=new_port, handoff_port=old.port)
    env = {
        "MAILRELAY_ENDPOINT_WAIT_SECONDS": "0",
        "MAILRELAY_DRAIN_SECONDS": "1",
        "MAILRELAY_HANDOFF_SECONDS": "120",
        "MAILRELAY_DRAIN_FLUSH_EVERY": "1",
    }
    result = old.run_script("drain.sh", env=env, timeout=300)
    assert "500 message(s) handed to the other replicas" in result.stdout, result.stdout + result.stderr
    assert old.termination_log.read_text().endswith("nothing left\n")
    old.stop()
    wait_queued(new, 500)
    platform.sink.start()
    assert new.postfix("flush").returncode == 0
    platform.sink.wait_for(500, timeout=180)
    time.sleep(2)  # a duplicate would arrive by now
    counts = Counter(r.header("Message-ID") for r in platform.sink.received)
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert {r.auth for r in platform.sink.received} == {ROTATED}
    assert Counter(r.mail_from for r in platform.sink.received) == {
        "app@shop.apps.example.com": 250,
        "app@web.apps.example.com": 250,
    }
    assert "sasl_username=mailrelay-handoff@mailrelay" in new.log()
    assert "status=bounced" not in old.log() + new.log()
