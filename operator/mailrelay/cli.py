"""The `mailrelay-operator` command: render, validate, run (the controller) and local (one relay here)."""

from __future__ import annotations

import argparse
import sys

from mailrelay.manifests import dump, load_relays
from mailrelay.render import render
from mailrelay.spec import MailRelay, SpecError

EXIT_INVALID = 2


def _relays_or_exit(source: str) -> list[MailRelay]:
    try:
        return load_relays(source)
    except (SpecError, OSError) as exc:
        problems = exc.problems if isinstance(exc, SpecError) else [f"{source}: {exc.strerror or exc}"]
        for problem in problems:
            print(problem, file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None


def cmd_render(args: argparse.Namespace) -> int:
    relays = _relays_or_exit(args.file)
    sys.stdout.write(dump(obj for relay in relays for obj in render(relay)))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    relays = _relays_or_exit(args.file)
    for relay in relays:
        print(f"{relay.namespace}/{relay.name}: valid", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mailrelay.controller import run

    return run(namespaces=args.namespace, liveness_port=args.liveness_port, standby=args.standby,
               peering=args.peering, verbose=args.verbose, metrics_port=args.metrics_port)


def cmd_local(args: argparse.Namespace) -> int:
    from mailrelay.local import run_local

    relays = _relays_or_exit(args.file)
    if len(relays) != 1:
        print(f"{args.file}: local mode runs one MailRelay, found {len(relays)}", file=sys.stderr)
        return EXIT_INVALID
    return run_local(relays[0], port=args.port, listen=args.listen, workdir=args.workdir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailrelay-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    for name, func, text in (("render", cmd_render, "print the children of each relay as YAML"),
                             ("validate", cmd_validate, "check MailRelay documents; exit 2 if invalid")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("-f", "--file", required=True, help="a YAML file of MailRelays, or - for stdin")
        sub.set_defaults(func=func)

    run = commands.add_parser("run", help="run the controller against the current kubeconfig or in-cluster")
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="watch this namespace (repeatable); all namespaces when omitted")
    run.add_argument("--liveness-port", type=int, default=8080, help="serve /healthz here (0 turns it off)")
    run.add_argument("--metrics-port", type=int, default=9090,
                     help="serve Prometheus metrics on /metrics here (0 turns it off)")
    run.add_argument("--peering", default=None, metavar="NAME",
                     help="kopf peering object shared by replicas: one is active, the others stand by "
                          "(needs kopf's peering CRDs); without it the operator runs standalone")
    run.add_argument("--standby", action="store_true", help="with --peering: lower priority, so this "
                     "replica waits while another one is active")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=cmd_run)

    local = commands.add_parser("local", help="run one MailRelay with the local Postfix, in the foreground")
    local.add_argument("-f", "--file", required=True, help="a YAML file with one MailRelay")
    local.add_argument("--port", type=int, default=2525, help="SMTP port to listen on (default 2525)")
    local.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    local.add_argument("--workdir", default=None, help="keep config, queue and logs here (default: a temp dir)")
    local.set_defaults(func=cmd_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
