"""The mail path: CPU per message of the whole Postfix process tree, throughput, and memory per relay.

Each configuration runs through the image's own entrypoint (the mail tests' harness,
tests/support/postfix_harness.py, over mailrelay.local) with the files the operator renders, or with a stock
relay main.cf. The relay's processes are moved into their own cgroup, whose CPU counter is the
figure: it is what the relay itself consumed, whatever else the machine was doing, where throughput
also measures the load generator, the sink and the neighbours. Configurations alternate within a
round, in a rotated order each round.
"""

from __future__ import annotations

import inspect
import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailrelay.api.names import API_VERSION, KIND
from mailrelay.api.spec import SpecError, parse
from mailrelay.local.runner import postfix_problem
from mailrelay.render.postfix import config_files

from accounting import CpuGroup, cpu_by_command, own_cpu, pss_mb
from oauth2_hop import Hop, oauth2_spec
from stats import spread
from support.postfix_harness import HarnessPostfix

HERE = Path(__file__).resolve().parent
FQDN = "bench.example.com"
CLIENT_NETWORK = "127.0.0.16/28"  # the load generator's sessions come from here, one address each, like pods
MAX_CONNECTIONS = 16
# A stock relay: what a hand-rolled Postfix chart typically ships. No sender rewriting, no limits.
STOCK_MAIN_CF = """\
compatibility_level = 3.6
myhostname = relay.bench.invalid
mydestination =
inet_interfaces = all
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128 10.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = /dev/stdout
relayhost = [127.0.0.1]:{port}
smtp_tls_security_level = none
"""


@dataclass
class Configuration:
    """One way to run the relay: spec additions on top of the defaults, or the stock main.cf."""

    key: str
    label: str
    spec: dict[str, Any] = field(default_factory=dict)
    stock: bool = False
    # extra keyword arguments for HarnessPostfix (a DKIM key, say), made per run
    instance_args: Callable[[], dict[str, Any]] = dict
    # what this configuration's cost is measured against: (with, without) the feature
    compare: tuple[str, str] | None = None
    signs: bool = False  # every message must arrive with a DKIM-Signature
    # run after Postfix started, with its cgroup: a sidecar of the pod joins the relay's account
    after_start: Callable[[HarnessPostfix, CpuGroup], None] | None = None
    # parameters replaced in the rendered main.cf: one feature switched off
    main_cf_extra: str = ""
    rewrites: bool | None = True  # every message must leave with the rewritten sender (None: not checked)
    # the smarthost wants XOAUTH2: the image's XOAUTH2 relay runs in the relay's account (bench/oauth2_hop.py)
    xoauth2: bool = False


# The rendered config with one part switched off, to see what each part of the default costs
# (`--features` with these keys; only DEFAULT_ABLATIONS in the default run).
ABLATIONS = {
    "ours_no_header_checks": (
        "rendered without header_checks and smtp_header_checks (Reply-To & co. kept)",
        "header_checks =\nsmtp_header_checks =\n",
        True,
    ),
    "ours_no_canonical": (
        "rendered without sender rewriting (canonical maps)",
        "sender_canonical_maps =\ncanonical_maps =\n",
        None,
    ),
    "ours_no_header_rewrite": (
        "rendered, headers of remote clients not rewritten (envelope only)",
        "local_header_rewrite_clients = permit_inet_interfaces\n",
        None,
    ),
    "ours_without_features": (
        "rendered without sender rewriting (envelope and headers) and without limits",
        "sender_canonical_maps =\ncanonical_maps =\n"
        "local_header_rewrite_clients = permit_inet_interfaces\n"
        "smtpd_client_connection_count_limit = 0\nsmtpd_client_message_rate_limit = 0\n"
        "smtpd_client_recipient_rate_limit = 0\n",
        False,
    ),
    "ours_stock_smtpd": (
        "rendered with stock smtpd restrictions and pipelining checks",
        "smtpd_client_restrictions =\nsmtpd_recipient_restrictions =\nsmtpd_delay_reject = yes\n"
        "smtpd_forbid_unauth_pipelining = no\nsmtpd_forbid_bare_newline = no\n",
        True,
    ),
}
DEFAULT_ABLATIONS = ("ours_without_features",)


def override(main_cf: str, lines: str) -> str:
    """`main_cf` with the parameters set in `lines` replaced (Postfix warns about a parameter set twice,
    and the entrypoint refuses a configuration with warnings)."""
    names = {line.split("=", 1)[0].strip() for line in lines.splitlines() if "=" in line}
    kept = [line for line in main_cf.splitlines() if line.split("=", 1)[0].strip() not in names]
    return "\n".join(kept) + "\n" + lines


def relay_spec(sink_port: int, extra: dict[str, Any]) -> dict[str, Any]:
    """`extra["relay"]` adds to the smarthost (the sink), whose address and port stay."""
    relay = {"host": "127.0.0.1", "port": sink_port, "tls": "None", **extra.get("relay", {})}
    return {"mailFromFQDN": FQDN, "allowedNetworks": [CLIENT_NETWORK], **extra, "relay": relay}


def supported(extra: dict[str, Any]) -> bool:
    """Does this build of the operator know these spec fields? (Features land at different times.)"""
    try:
        parse(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": "bench", "namespace": "bench"},
                "spec": relay_spec(25, extra),
            }
        )
    except SpecError:
        return False
    return True


def configurations() -> list[Configuration]:
    """Stock, ours as rendered by default, and ours with each optional feature this build has."""
    found = [
        Configuration("stock", "Postfix, stock relay main.cf (no rewriting, no limits)", stock=True),
        Configuration(
            "ours",
            "Postfix, rendered MailRelay config (defaults: rewriting, per-client limits)",
            compare=("ours", "stock"),
        ),
    ]
    no_limits = {"limits": {"messagesPerMinute": 0, "recipientsPerMinute": 0, "concurrentConnections": 0}}
    if supported(no_limits):
        found.append(
            Configuration(
                "ours_no_limits",
                "rendered, spec.limits all 0 (no anvil)",
                no_limits,
                compare=("ours", "ours_no_limits"),
            )
        )
    dkim = _dkim()
    if dkim:
        found.append(dkim)
    for key, (label, extra_lines, rewrites) in ABLATIONS.items():
        found.append(Configuration(key, label, main_cf_extra=extra_lines, rewrites=rewrites, compare=("ours", key)))
    oauth2 = {"relay": oauth2_spec()}
    if supported(oauth2):
        found.append(
            Configuration(
                "ours_oauth2",
                "rendered, smarthost login OAuth2: Postfix → XOAUTH2 relay → STARTTLS + AUTH XOAUTH2",
                oauth2,
                compare=("ours_oauth2", "ours"),
                xoauth2=True,
            )
        )
    if hasattr(HarnessPostfix, "start_exporter"):
        found.append(
            Configuration(
                "ours_metrics",
                "rendered + metrics sidecar (prometheus-postfix-exporter)",
                after_start=_start_exporter,
                compare=("ours_metrics", "ours"),
            )
        )
    return found


def _dkim() -> Configuration | None:
    """Rendered + DKIM signing with OpenDKIM, when this build has spec.dkim."""
    extra = {"dkim": {"domain": FQDN}}
    if not supported(extra) or "dkim_keys" not in inspect.signature(HarnessPostfix).parameters:
        return None
    from mailrelay.api import dkim

    relay = parse(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": relay_spec(25, extra),
        }
    )
    spec = relay.spec.dkim
    assert spec is not None
    keys = {file: dkim.generate(algorithm, spec.rsa_bits) for algorithm, file in dkim.needed(spec).items()}
    return Configuration(
        "ours_dkim",
        f"rendered + DKIM signing (OpenDKIM, {spec.key_type} {spec.rsa_bits})",
        extra,
        instance_args=lambda: {"dkim_keys": keys},
        compare=("ours_dkim", "ours"),
        signs=True,
    )


def _start_exporter(instance: HarnessPostfix, group: CpuGroup) -> None:
    from support.smtp_sink import free_port

    instance.start_exporter(free_port())
    assert instance.exporter is not None
    group.adopt_tree(instance.exporter.pid)


class SinkProcess:
    """The aiosmtpd sink in its own process, so it shares no GIL with the load generator."""

    def __init__(self, workdir: Path, args: list[str] | None = None):
        from support.smtp_sink import free_port

        self.port = free_port()
        self.path = workdir / f"sink-{self.port}.tsv"
        self.path.touch()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "sink.py"), str(self.port), str(self.path), *(args or [])],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def count(self) -> int:
        with self.path.open("rb") as f:
            return sum(1 for _ in f)

    def lines(self) -> list[list[str]]:
        return [line.split("\t") for line in self.path.read_text().splitlines()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _send(
    port: int, source: str, messages: list[EmailMessage], senders: list[str], errors: list[BaseException]
) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0)) as smtp:
            for sender, msg in zip(senders, messages, strict=True):
                smtp.send_message(msg, from_addr=sender, to_addrs=["sink@example.org"])
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def _batch(count: int) -> tuple[list[EmailMessage], list[str], list[str]]:
    messages, senders, ids = [], [], []
    for i in range(count):
        msg = EmailMessage()
        sender = f"worker{i % 7}@pod-{i % 13}.default.svc.cluster.local"
        msg["From"] = sender
        msg["To"] = "sink@example.org"
        msg["Subject"] = f"bench {i}"
        msg["Message-ID"] = f"<{uuid.uuid4()}@bench>"
        msg.set_content("benchmark message\n" * 20)
        messages.append(msg)
        senders.append(sender)
        ids.append(msg["Message-ID"])
    return messages, senders, ids


class _PssSampler(threading.Thread):
    """The largest summed PSS of the group's processes while the load runs."""

    def __init__(self, group: CpuGroup):
        super().__init__(daemon=True)
        self.group, self.peak, self.processes = group, 0.0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            pids = self.group.pids()
            self.peak = max(self.peak, pss_mb(pids))
            self.processes = max(self.processes, len(pids))


def _check(kind: str, lines: list[list[str]], ids: list[str], rewrites: bool | None, signs: bool = False) -> None:
    """Every message arrived exactly once, with the sender rewritten if `rewrites` (None: not checked),
    and signed if `signs`."""
    got_ids = [line[1] for line in lines]
    if len(lines) != len(ids) or sorted(got_ids) != sorted(ids):
        raise RuntimeError(
            f"{kind}: {len(lines)} messages arrived, {len(set(got_ids))} distinct, expected {len(ids)} exactly once"
        )
    rewritten = [line[0].endswith(f"@{FQDN}") and line[2].endswith(f"@{FQDN}") for line in lines]
    if rewrites and not all(rewritten):
        raise RuntimeError(f"{kind}: a message left without the rewritten sender")
    if rewrites is False and any(rewritten):
        raise RuntimeError(f"{kind}: unexpected rewriting")
    if signs and not all(line[3] == "signed" for line in lines):
        raise RuntimeError(f"{kind}: a message left without a DKIM signature")


def mail_run(config: Configuration | None, count: int, connections: int, workdir: Path) -> dict[str, Any]:
    """One run: `count` messages over `connections` sessions until all reached the sink.
    `config` None sends straight to the sink (the load generator's own limit)."""
    hop = Hop(workdir) if config is not None and config.xoauth2 else None
    sink = SinkProcess(workdir, hop.sink_args() if hop else None)
    instance: HarnessPostfix | None = None
    group: CpuGroup | None = None
    kind = config.key if config else "sink"
    try:
        target = sink.port
        result: dict[str, Any] = {"kind": kind, "messages": count}
        if config is not None:
            from support.smtp_sink import free_port

            relay = parse(
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {"name": "bench", "namespace": "bench"},
                    "spec": relay_spec(sink.port, config.spec),
                }
            )
            extra = {"main.cf": STOCK_MAIN_CF.format(port=sink.port)} if config.stock else None
            if config.main_cf_extra:
                extra = {"main.cf": override(config_files(relay.spec)["main.cf"], config.main_cf_extra)}
            instance = HarnessPostfix(
                relay,
                workdir / f"{kind}-{uuid.uuid4().hex[:6]}",
                port=free_port(),
                extra_files=extra,
                **config.instance_args(),
            )
            hop_pid = hop.start(instance) if hop else None
            instance.start()
            assert instance.process is not None
            group = CpuGroup(f"mailrelay-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}")
            group.adopt_tree(instance.process.pid)
            if hop_pid is not None:  # a container of the relay's pod: its CPU is the relay's
                group.adopt_tree(hop_pid)
            if config.after_start:
                config.after_start(instance, group)
            time.sleep(1.0)  # past start-up: the daemons an idle relay keeps (master, qmgr, pickup, ...)
            result["idle_pss_mb"] = pss_mb(group.pids())
            result["idle_processes"] = len(group.pids())
            target = instance.port
        messages, senders, ids = _batch(count)
        errors: list[BaseException] = []
        network = CLIENT_NETWORK.split("/")[0].rsplit(".", 1)
        threads = [
            threading.Thread(
                target=_send,
                args=(
                    target,
                    f"{network[0]}.{int(network[1]) + i}",
                    messages[i::connections],
                    senders[i::connections],
                    errors,
                ),
            )
            for i in range(connections)
        ]
        sampler = _PssSampler(group) if group else None
        before = group.usage() if group else None
        processes_before = own_cpu(group.pids()) if group else {}
        start = time.perf_counter()
        if sampler:
            sampler.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 300
        while sink.count() < count and time.monotonic() < deadline and not errors:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        time.sleep(0.5)  # duplicates would arrive now; the relay finishes its bookkeeping
        if group and before and sampler:
            sampler.done.set()
            sampler.join()
            used = group.usage() - before
            result["cpu_seconds_by_command"] = cpu_by_command(processes_before, own_cpu(group.pids()), used.total)
            result.update(
                cpu_seconds=used.total,
                cpu_user_seconds=used.user,
                cpu_system_seconds=used.system,
                cpu_ms_per_message=1000 * used.total / count,
                load_pss_mb=sampler.peak,
                load_processes=sampler.processes,
            )
        if errors:
            raise RuntimeError(f"{kind}: sending failed: {errors[0]!r}")
        _check(
            kind,
            sink.lines(),
            ids,
            None if config is None else (False if config.stock else config.rewrites),
            config is not None and config.signs,
        )
        result.update(seconds=elapsed, msg_per_s=count / elapsed)
        return result
    finally:
        if instance is not None:
            instance.stop()
        if hop is not None:
            hop.stop()
        if group is not None:
            group.close()
        sink.stop()


def bench_mail(count: int, connections: int, rounds: int, only: list[str] | None = None) -> dict[str, Any]:
    problem = postfix_problem()
    if problem:
        raise SystemExit(f"mail benchmark needs Postfix: {problem}")
    if connections > MAX_CONNECTIONS:
        raise SystemExit(f"at most {MAX_CONNECTIONS} connections (one client address each)")
    configs = [
        c
        for c in configurations()
        if c.key in ("stock", "ours")
        or (c.key in only if only else c.key not in ABLATIONS or c.key in DEFAULT_ABLATIONS)
    ]
    workdir = Path(tempfile.mkdtemp(prefix="mailrelay-bench-"))
    workdir.chmod(0o755)
    for config in configs:  # warm-up: page cache, Postfix binaries, each feature's daemons
        mail_run(config, min(200, count), connections, workdir)
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in configs}
    runs["sink"] = [mail_run(None, count, connections, workdir)]
    for round_number in range(rounds):
        # Rotate who goes first, so drift in the machine's load hits every configuration alike.
        shift = round_number % len(configs)
        for config in configs[shift:] + configs[:shift]:
            runs[config.key].append(mail_run(config, count, connections, workdir))
    return {
        "messages": count,
        "connections": connections,
        "rounds": rounds,
        "labels": {c.key: c.label for c in configs},
        "runs": runs,
        "summary": summarize(runs, [c.compare for c in configs if c.compare]),
    }


def summarize(runs: dict[str, list[dict[str, Any]]], compare: list[tuple[str, str]]) -> dict[str, Any]:
    """Per configuration: spread of CPU per message, throughput and PSS; for each (with, without) pair
    the spread of the per-round ratios, each ratio from two runs of the same round."""
    summary: dict[str, Any] = {}
    for kind, results in runs.items():
        entry: dict[str, Any] = {"msg_per_s": spread([r["msg_per_s"] for r in results])}
        if kind != "sink":
            entry["cpu_ms_per_message"] = spread([r["cpu_ms_per_message"] for r in results])
            entry["idle_pss_mb"] = spread([r["idle_pss_mb"] for r in results])
            entry["load_pss_mb"] = spread([r["load_pss_mb"] for r in results])
            commands = sorted({c for r in results for c in r["cpu_seconds_by_command"]})
            entry["cpu_ms_per_message_by_command"] = {
                c: spread([1000 * r["cpu_seconds_by_command"].get(c, 0.0) / r["messages"] for r in results])["median"]
                for c in commands
            }
        summary[kind] = entry
    ratios: dict[str, Any] = {}
    for kind, base in compare:
        pairs = list(zip(runs[kind], runs[base], strict=True))
        ratios[f"{kind}/{base}"] = {
            "cpu": spread([a["cpu_ms_per_message"] / b["cpu_ms_per_message"] for a, b in pairs]),
            "throughput": spread([a["msg_per_s"] / b["msg_per_s"] for a, b in pairs]),
        }
    summary["ratios"] = ratios
    return summary
