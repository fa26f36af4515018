"""The tables bench/run.py prints (Markdown, so they paste into bench/README.md as they are)."""

from __future__ import annotations

from typing import Any

GOALS = {"cpu_ratio": 1.05, "create_seconds": 60.0, "rss_mb": 150.0}


def _spread(s: dict[str, float], fmt: str = ".3f") -> str:
    return f"{s['median']:{fmt}} (IQR {s['q1']:{fmt}}-{s['q3']:{fmt}}, range {s['min']:{fmt}}-{s['max']:{fmt}})"


def mail_tables(mail: dict[str, Any]) -> list[str]:
    summary, labels = mail["summary"], mail["labels"]
    out = [
        f"Mail path: {mail['messages']} messages a run over {mail['connections']} sessions, "
        f"{mail['rounds']} rounds, configurations alternated (median, IQR and range over rounds)",
        "",
        "| configuration | CPU ms per message (whole Postfix tree) | msg/s | PSS idle MiB | PSS under load MiB |",
        "|---|---|---|---|---|",
        f"| load generator -> sink directly (harness limit) | | {summary['sink']['msg_per_s']['median']:.0f} | | |",
    ]
    for key, label in labels.items():
        s = summary[key]
        out.append(
            f"| {label} | {_spread(s['cpu_ms_per_message'])} | {_spread(s['msg_per_s'], '.0f')} | "
            f"{s['idle_pss_mb']['median']:.1f} | {s['load_pss_mb']['median']:.1f} |"
        )
    out += ["", "CPU ms per message by Postfix daemon (median over rounds):", ""]
    for key in labels:
        by = summary[key]["cpu_ms_per_message_by_command"]
        out.append(
            f"- {key}: " + ", ".join(f"{c} {v:.3f}" for c, v in sorted(by.items(), key=lambda kv: -kv[1]) if v >= 0.005)
        )
    out += ["", "| ratio (per round, same round's runs) | CPU per message | throughput |", "|---|---|---|"]
    for pair, ratio in summary["ratios"].items():
        goal = f" (goal <= {GOALS['cpu_ratio']})" if pair == "ours/stock" else ""
        out.append(f"| {pair}{goal} | {_spread(ratio['cpu'])} | {_spread(ratio['throughput'])} |")
    return [*out, ""]


def _cpu_line(cpu: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))


def scale_tables(scale: dict[str, Any]) -> list[str]:
    out = [
        f"Controller on the real control plane: {scale['relays']} MailRelays in {scale['namespaces']} "
        f"namespaces, {scale['nodes']} kwok nodes, resync {scale['resync_seconds']} s, "
        f"controller-manager client QPS {scale['controller_manager_qps']}",
        "",
        "| phase | all (s) | p50 (s) | p95 (s) | max (s) | operator requests / relay | operator writes / relay "
        "(+ Events) | operator API p95 (s) | CPU cores busy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    n = scale["relays"]
    labels = {
        "create": "create -> children + status (goal all <= 60 s)",
        "ready": "create -> Ready",
        "update": "update wave -> new main.cf + status",
    }
    for phase in ("create", "ready", "update"):
        p = scale[phase]
        api, lat = p["operator_api"], p["latency_seconds"]
        out.append(
            f"| {labels[phase]} | {p['all_seconds']:.1f} | {lat['p50']:.1f} | {lat['p95']:.1f} | "
            f"{lat['max']:.1f} | {api['requests'] / n:.1f} | {api['writes'] / n:.2f} "
            f"(+{api['event_writes'] / n:.2f}) | {api.get('latency_seconds', {}).get('p95', 0):.3f} | "
            f"{p['cpu_cores_busy']:.2f} |"
        )
    idle = scale["idle"]
    out += [
        "",
        f"Idle over {idle['seconds']:.0f} s ({idle['resync_rounds']} resync rounds): "
        f"operator writes {idle['operator_api']['writes']} (goal 0), Events "
        f"{idle['operator_api']['event_writes']}, Lease renewals {idle['operator_api'].get('lease_writes', 0)}, "
        f"requests {idle['operator_api']['requests']}",
        "",
    ]
    rss = scale["operator_rss_mb"]
    out += [
        "Operator RSS (MiB): "
        + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
        + f" (goal <= {GOALS['rss_mb']:.0f} at {n})",
        "",
    ]
    out += ["CPU seconds by process (they share the cores):"]
    for phase in ("create", "ready", "idle", "update"):
        out.append(f"- {phase} ({scale[phase]['seconds']:.0f} s): {_cpu_line(scale[phase]['cpu_seconds'])}")
    return [*out, ""]


def emulated_tables(ctl: dict[str, Any]) -> list[str]:
    out = [
        f"Controller on the EMULATED API server (tests/support/kube_emulator.py): {ctl['relays']} MailRelays in "
        f"{ctl['namespaces']} namespaces",
        "",
        "| wave | all converged (s) | p50 (s) | p95 (s) | operator writes per relay |",
        "|---|---|---|---|---|",
    ]
    for wave in ("create", "update"):
        w = ctl[wave]
        out.append(
            f"| {wave} | {w['total_seconds']:.1f} | {w['p50_seconds']:.2f} | {w['p95_seconds']:.2f} | "
            f"{w['writes_per_relay']:.2f} |"
        )
    idle = ctl["idle"]
    out += [
        f"| idle ({idle['seconds_watched']} s, resync every {idle['resync_seconds']} s) | | | | "
        f"{idle['writes']} writes in total |",
        "",
        f"Operator RSS: idle {ctl['rss_mb']['idle']:.0f} MiB, with {ctl['relays']} relays "
        f"{ctl['rss_mb']['loaded']:.0f} MiB",
        "",
    ]
    return out


def failover_tables(f: dict[str, Any]) -> list[str]:
    out = [
        f"Failover: 2 replicas of manifests/cluster-wide-ha (emulated API server), {f['rounds']} rounds; leader "
        "stopped -> a relay created then is reconciled by the other",
        "",
        "| leader stopped by | median (s) | max (s) | runs (s) |",
        "|---|---|---|---|",
    ]
    for how in ("SIGKILL", "SIGTERM"):
        out.append(
            f"| {how} | {f[how]['median']:.1f} | {f[how]['max']:.1f} | "
            f"{', '.join(f'{r:.1f}' for r in f[how]['runs'])} |"
        )
    return [*out, ""]


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; "
        f"load average at start {' '.join(m['load_average_at_start'])}, at end "
        f"{' '.join(m.get('load_average_at_end', []))}; {results.get('seconds', 0):.0f} s in all",
        "",
    ]
    if "render" in results:
        r = results["render"]
        out += [
            f"Render: {r['renders_per_s']:.0f} relays/s (spec -> manifests); parse+validate: {r['parses_per_s']:.0f}/s",
            "",
        ]
    if "mail" in results:
        out += mail_tables(results["mail"])
    if "scale" in results:
        out += scale_tables(results["scale"])
    if "emulated" in results:
        out += emulated_tables(results["emulated"])
    if "failover" in results:
        out += failover_tables(results["failover"])
    return "\n".join(out)
