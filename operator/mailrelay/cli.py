"""The `mailrelay-operator` command: render, validate, run (the controller) and local (one relay here)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from typing import Any

from mailrelay.api.secret import Credentials, SecretProblem, credentials
from mailrelay.api.spec import MailRelay, SpecError
from mailrelay.controller.settings import Settings, SettingsError
from mailrelay.local.runner import STATE_ROOT
from mailrelay.manifests import dump, load_file
from mailrelay.render.relay import render_relay

EXIT_INVALID = 2


def _file_or_exit(source: str) -> tuple[list[MailRelay], list[dict[str, Any]]]:
    try:
        return load_file(source, Settings.from_environment().postfix_image)
    except (SpecError, OSError, SettingsError) as exc:
        problems = (
            exc.problems
            if isinstance(exc, SpecError)
            else [str(exc)]
            if isinstance(exc, SettingsError)
            else [f"{source}: {exc.strerror or exc}"]
        )
        for problem in problems:
            print(problem, file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None


def _relays_or_exit(source: str) -> list[MailRelay]:
    return _file_or_exit(source)[0]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535, got {port}")
    return port


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address (such as 127.0.0.1 or ::1)") from None


def _login(relay: MailRelay, secrets: list[dict[str, Any]], args: argparse.Namespace) -> Credentials | None:
    """The smarthost login for local mode: a Secret document in the same file, else the workdir's files."""
    name = relay.spec.relay.auth_secret if relay.spec.relay else None
    if not name:
        return None
    found = [s for s in secrets if isinstance(s.get("metadata"), dict) and s["metadata"].get("name") == name]
    if found:
        try:
            return credentials(found[0])
        except SecretProblem as exc:
            raise SystemExit(_fail(f"{args.file}: Secret {name}: {exc}")) from None
    if args.workdir and _stored_login(args.workdir):
        return None  # written there earlier by this user; the entrypoint checks them
    raise SystemExit(
        _fail(
            f"{args.file}: spec.relay.authSecretRef names Secret {name}, which is not in the file: add it as another "
            f"document (apiVersion: v1, kind: Secret, metadata.name: {name}, stringData: username and password)"
        )
    )


def _stored_login(workdir: str) -> bool:
    from mailrelay.local.files import UnsafePath
    from mailrelay.local.runner import stored_login

    try:
        return stored_login(Path(workdir))
    except (UnsafePath, FileNotFoundError) as exc:
        raise SystemExit(_fail(f"mailrelay-operator local: {exc}")) from None


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_INVALID


def cmd_render(args: argparse.Namespace) -> int:
    relays = _relays_or_exit(args.file)
    sys.stdout.write(dump(obj for relay in relays for obj in render_relay(relay).objects))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    relays = _relays_or_exit(args.file)
    for relay in relays:
        print(f"{relay.namespace}/{relay.name}: valid", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mailrelay.controller.process import run

    return run(
        namespaces=args.namespace,
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        verbose=args.verbose,
    )


def cmd_local(args: argparse.Namespace) -> int:
    from mailrelay.local.dkim import secrets_in
    from mailrelay.local.runner import run_local

    relays, secrets = _file_or_exit(args.file)
    if len(relays) != 1:
        return _fail(f"{args.file}: local mode runs one MailRelay, found {len(relays)}")
    login = _login(relays[0], secrets, args)
    return run_local(
        relays[0], port=args.port, listen=args.listen, workdir=args.workdir, login=login, secrets=secrets_in(secrets)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailrelay-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    for name, func, text in (
        ("render", cmd_render, "print the children of each relay as YAML"),
        ("validate", cmd_validate, "check MailRelay documents; exit 2 if invalid"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("-f", "--file", required=True, help="a YAML file of MailRelays, or - for stdin")
        sub.set_defaults(func=func)

    run = commands.add_parser(
        "run",
        help="run the controller against the current kubeconfig or in-cluster; "
        "replicas elect a leader with a Lease in POD_NAMESPACE, only it reconciles",
    )
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable); all namespaces when omitted",
    )
    run.add_argument("--liveness-port", type=int, default=8080, help="serve /healthz here (0 turns it off)")
    run.add_argument(
        "--metrics-port", type=int, default=9090, help="serve Prometheus metrics on /metrics here (0 turns it off)"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=cmd_run)

    local = commands.add_parser(
        "local",
        help="run one MailRelay with the local Postfix, in the foreground",
        description="Run one MailRelay with this machine's Postfix. With spec.relay.authSecretRef, put the "
        "Secret in the same file as another document (apiVersion: v1, kind: Secret, with stringData "
        "or data holding username and password); it is written only to a root-only file.",
    )
    local.add_argument("-f", "--file", required=True, help="a YAML file with one MailRelay (and its Secret)")
    local.add_argument("--port", type=_port, default=2525, help="SMTP port to listen on, 1-65535 (default 2525)")
    local.add_argument(
        "--listen", type=_address, default="127.0.0.1", help="IP address to listen on (default 127.0.0.1)"
    )
    local.add_argument(
        "--workdir",
        default=None,
        help="keep the rendered files and the login here and Postfix's queue under "
        f"{STATE_ROOT}; it must be yours and writable only by you, below directories only root or you can "
        "change (made 0700 if missing); one instance per workdir (default: a temp dir)",
    )
    local.set_defaults(func=cmd_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
