"""The benchmark's own logic: order statistics, the audit log's accounting, cgroup and /proc accounting,
and how watch events become per-relay progress. Fast, and no timing assertions: the figures are bench/'s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from accounting import (
    AccountingError,
    CpuGroup,
    CpuUsage,
    cpu_by_command,
    descendants,
    parse_cpu_stat,
    parse_cpuacct,
    parse_pss_kb,
    parse_stat,
    pss_mb,
)
from audit import AuditLog, requests_by_user, summarize
from mailpath import summarize as summarize_mail
from stats import latency_summary, percentile, spread
from watch import Progress

OPERATOR = "system:serviceaccount:mailrelay-system:mailrelay-operator"


def test_percentile_interpolates_between_order_statistics() -> None:
    assert percentile([3, 1, 2, 4], 0.5) == 2.5
    assert percentile([10], 0.95) == 10
    assert percentile(list(range(101)), 0.95) == 95
    assert percentile([1, 2], 1) == 2 and percentile([1, 2], 0) == 1
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1], 1.5)


def test_spread_and_latency_summary() -> None:
    s = spread([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["median"], s["q1"], s["q3"], s["iqr"], s["min"], s["max"], s["n"]) == (3, 2, 4, 2, 1, 100, 5)
    lat = latency_summary([float(i) for i in range(1, 21)])
    assert lat["p50"] == 10.5 and lat["max"] == 20 and lat["n"] == 20


def _event(
    user: str,
    verb: str,
    resource: str,
    subresource: str = "",
    code: int = 200,
    start: str = "2026-11-26T02:00:00.000000Z",
    end: str = "2026-11-26T02:00:00.250000Z",
) -> dict:
    ref = {"resource": resource, "namespace": "ns", "name": "x"}
    if subresource:
        ref["subresource"] = subresource
    return {
        "kind": "Event",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user},
        "objectRef": ref,
        "responseStatus": {"code": code},
        "requestReceivedTimestamp": start,
        "stageTimestamp": end,
    }


def test_audit_summary_counts_one_users_writes_apart_from_events_and_watches() -> None:
    events = [
        _event(OPERATOR, "get", "configmaps"),
        _event(OPERATOR, "patch", "configmaps"),
        _event(OPERATOR, "patch", "mailrelays", "status"),
        _event(OPERATOR, "create", "events"),
        _event(OPERATOR, "watch", "deployments", end="2026-11-26T02:05:00Z"),
        _event(OPERATOR, "patch", "deployments", code=409),
        _event("admin", "create", "mailrelays"),
        {**_event(OPERATOR, "patch", "services"), "stage": "ResponseStarted"},
    ]
    s = summarize(events, OPERATOR)
    assert s["requests"] == 6 and s["watches"] == 1
    assert s["writes"] == 3 and s["event_writes"] == 1
    assert s["writes_by_kind"] == {"patch configmaps": 1, "patch mailrelays/status": 1, "patch deployments": 1}
    assert s["response_codes"] == {"200": 5, "409": 1}
    assert s["latency_seconds"]["max"] == 0.25  # the watch's five minutes are not a latency
    assert requests_by_user(events) == {OPERATOR: 6, "admin": 1}


def test_audit_marks_split_phases_at_line_ends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    assert log.mark() == 0
    first = json.dumps(_event(OPERATOR, "get", "configmaps"))
    second = json.dumps(_event(OPERATOR, "patch", "configmaps"))
    log.path.write_text(first + "\n" + second[:20])  # the second line is still being written
    middle = log.mark()
    assert middle == len(first) + 1
    with log.path.open("a") as f:
        f.write(second[20:] + "\n")
    end = log.mark()
    assert [e["verb"] for e in log.since(0, middle)] == ["get"]
    assert [e["verb"] for e in log.since(middle, end)] == ["patch"]
    # A tail longer than the window read back, with no line end yet: the mark stays, never goes back.
    with log.path.open("a") as f:
        f.write("x" * (1 << 21))
    assert log.mark() == end and log.since(end, middle) == []


def test_proc_stat_with_spaces_and_parens_in_the_name() -> None:
    line = "4242 (smtpd (x) y) S 17 4242 4242 0 -1 4194560 100 0 0 0 7 3 11 13 20 0 1 0 5 0 0"
    assert parse_stat(line) == {"ppid": 17, "session": 4242, "utime": 7, "stime": 3, "cutime": 11, "cstime": 13}


def test_cgroup_counters_and_pss_parse() -> None:
    assert parse_cpu_stat("usage_usec 3500000\nuser_usec 2500000\nsystem_usec 1000000\n") == CpuUsage(2.5, 1.0)
    assert parse_cpuacct("2000000000\n", "500000000\n") == CpuUsage(2.0, 0.5)
    assert (CpuUsage(3, 2) - CpuUsage(1, 1)).total == 3
    assert parse_pss_kb("Rss:  100 kB\nPss:  42 kB\nPss_Anon: 3 kB\n") == 42
    with pytest.raises(ValueError):
        parse_pss_kb("")  # a zombie's smaps_rollup is empty


def _fake_proc(root: Path, processes: dict[int, tuple[str, int, int, int, int]]) -> Path:
    """pid -> (command, parent, utime, stime, pss kB) as files under a fake /proc."""
    for pid, (command, parent, utime, stime, pss) in processes.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_text(
            f"{pid} ({command}) S {parent} {pid} {pid} 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 5 0 0"
        )
        (root / str(pid) / "smaps_rollup").write_text(f"Rss: {2 * pss} kB\nPss: {pss} kB\n")
    (root / "self").mkdir()
    return root


def test_descendants_pss_and_cpu_by_command(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        {
            1: ("init", 0, 0, 0, 1),
            10: ("postfix-script", 1, 0, 0, 1024),
            11: ("master", 10, 5, 5, 2048),
            12: ("qmgr", 11, 1, 1, 1024),
            13: ("smtpd", 11, 1, 1, 1024),
            20: ("other", 1, 9, 9, 4096),
        },
    )
    assert sorted(descendants(10, proc)) == [10, 11, 12, 13]
    assert descendants(99, proc) == []
    assert pss_mb([10, 11, 12, 13, 404], proc) == 5.0  # 404 has exited: counted as nothing
    before = {11: ("master", 1.0), 12: ("smtpd", 0.5)}
    after = {11: ("master", 1.5), 12: ("smtpd", 1.0), 13: ("smtpd", 0.25)}
    assert cpu_by_command(before, after, total=2.0) == {"(exited)": 0.75, "smtpd": 0.75, "master": 0.5}


def test_a_cgroup_named_in_no_usable_hierarchy_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AccountingError, match="cannot create a cgroup"):
        CpuGroup("x", roots=(tmp_path / "missing",))


def test_the_cgroup_counts_a_whole_tree_including_reaped_children() -> None:
    """The point of the cgroup: a grandchild that ran and was reaped still shows in the total."""
    try:
        group = CpuGroup(f"mailrelay-test-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    except AccountingError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    # The grandchild burns 1 s of CPU; the parent, asleep, almost none. Under load the group has been
    # seen to show less than the grandchild measured of itself (0.19 of 0.3 s once in about ten runs,
    # cause not found), so the bound only proves the reaped grandchild counts, with room for that.
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"
    parent = f"import subprocess, sys, time\ntime.sleep(1)\nsubprocess.run([sys.executable, '-c', {busy!r}])\n"
    process = subprocess.Popen([sys.executable, "-c", parent])
    try:
        before = group.usage()
        assert group.adopt_tree(process.pid) == 1
        assert group.pids() == [process.pid]
        process.wait(30)
        used = (group.usage() - before).total
        assert used >= 0.3, used  # the grandchild's CPU, counted after it was reaped
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        group.close()
    assert not group.path.exists()


def test_progress_takes_the_first_time_each_fact_held() -> None:
    progress = Progress(("ConfigMap", "Deployment"))
    progress.wanted_markers.append("size = 2")
    owner = [{"controller": True, "kind": "MailRelay", "name": "r", "uid": "u"}]
    key = ("ns", "r")
    child = progress.on_child("ConfigMap")
    child("ADDED", {"metadata": {"namespace": "ns", "ownerReferences": owner}, "data": {"main.cf": "size = 1"}}, 1.0)
    assert progress.created(key) is None
    progress.on_child("Deployment")("ADDED", {"metadata": {"namespace": "ns", "ownerReferences": owner}}, 2.0)
    relay: dict[str, Any] = {
        "metadata": {"namespace": "ns", "name": "r"},
        "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}]},
    }
    progress.on_relay("MODIFIED", relay, 3.0)
    progress.on_relay("MODIFIED", relay, 4.0)
    assert progress.created(key) == 3.0 and progress.ready_at(key, 1) is None
    relay["status"]["conditions"][0]["status"] = "True"
    progress.on_relay("MODIFIED", relay, 5.0)
    assert progress.ready_at(key, 1) == 5.0
    assert progress.updated(key, 2, "size = 2") is None
    child("MODIFIED", {"metadata": {"namespace": "ns", "ownerReferences": owner}, "data": {"main.cf": "size = 2"}}, 6.0)
    relay["status"]["observedGeneration"] = 2
    progress.on_relay("MODIFIED", relay, 7.0)
    assert progress.updated(key, 2, "size = 2") == 7.0
    progress.on_child("ConfigMap")("ADDED", {"metadata": {"namespace": "ns"}}, 8.0)  # not a relay's: ignored


def test_mail_ratios_pair_the_runs_of_one_round() -> None:
    def run(cpu: float, rate: float) -> dict:
        return {
            "messages": 1000,
            "cpu_ms_per_message": cpu,
            "msg_per_s": rate,
            "idle_pss_mb": 5.0,
            "load_pss_mb": 50.0,
            "cpu_seconds_by_command": {"smtpd": cpu / 2},
        }

    runs = {
        "sink": [{"msg_per_s": 900.0}],
        "stock": [run(2.0, 100), run(4.0, 50)],
        "ours": [run(2.2, 100), run(4.4, 40)],
    }
    summary = summarize_mail(runs, [("ours", "stock")])
    assert summary["ratios"]["ours/stock"]["cpu"]["median"] == pytest.approx(1.1)  # 1.1 in both rounds
    assert summary["ratios"]["ours/stock"]["throughput"]["min"] == pytest.approx(0.8)
    assert summary["ours"]["cpu_ms_per_message"]["median"] == pytest.approx(3.3)
    assert summary["ours"]["cpu_ms_per_message_by_command"]["smtpd"] == pytest.approx(1.65)
