"""Run one relay with this machine's Postfix, through the image's own entrypoint.

This is the embedded default when no cluster is configured, and the harness the mail-path tests
and benchmarks use: the files are exactly what the operator puts in the ConfigMap, and the start,
probe and drain scripts are exactly what runs in the pod.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mailrelay import scripts
from mailrelay.api.secret import Credentials
from mailrelay.api.spec import MailRelay
from mailrelay.local import dkim as local_dkim
from mailrelay.local import files
from mailrelay.local.files import UnsafePath
from mailrelay.render.relay import config_files

SEARCH_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"  # Postfix's commands live in sbin
INSTALL_HINT = (
    "Postfix is not installed. On Debian or Ubuntu, as root:\n"
    "  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections\n"
    "  DEBIAN_FRONTEND=noninteractive apt-get install -y postfix libsasl2-modules"
)


# Postfix's unprivileged daemons must reach the queue, data and log directories by absolute path, so
# with a user's --workdir (whose mode is the user's business) they live here instead, one directory
# per workdir, root-owned and world-traversable; only the password map in it is private (0600).
STATE_ROOT = Path(os.environ.get("MAILRELAY_LOCAL_STATE", "/var/lib/mailrelay-local"))
LOCK_FILE = ".mailrelay-local.lock"


class LocalRelayError(RuntimeError):
    pass


def state_dir_for(workdir: Path) -> Path:
    """The Postfix state directory that belongs to a user's workdir (stable, so the queue persists)."""
    return STATE_ROOT / hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:16]


def lock_workdir(workdir: Path) -> int:
    """Hold an exclusive lock on the workdir for this process's life, or raise if another instance has
    it; UnsafePath for a workdir (or lock file) another user made or could change."""
    fd = files.open_lock(files.checked_workdir(workdir) / LOCK_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LocalRelayError(
            f"another mailrelay-operator local (pid {holder}) is using {workdir}; stop it or choose another --workdir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def stored_login(workdir: Path) -> bool:
    """Whether an earlier run left the smarthost login in `workdir`; UnsafePath when what is there is
    not ours (a login file someone else made is never used, nor written into)."""
    if not os.path.lexists(workdir):
        return False
    secret_dir = files.checked_workdir(workdir) / "secret"
    return files.has_dir(secret_dir, private=True) and all(
        files.read_own(secret_dir / key) is not None for key in ("username", "password")
    )


def postfix_problem() -> str | None:
    """Why a local Postfix cannot run here, or None."""
    if not shutil.which("postfix", path=SEARCH_PATH):
        return INSTALL_HINT
    if os.geteuid() != 0:
        return "Postfix's master must start as root (it drops privileges itself): run this as root."
    return None


class LocalPostfix:
    """A private Postfix instance on loopback with its own config, queue and data directories."""

    def __init__(
        self,
        relay: MailRelay,
        workdir: Path,
        *,
        listen: str = "127.0.0.1",
        port: int = 2525,
        secret: dict[str, str] | None = None,
        extra_files: dict[str, str] | None = None,
        dkim_keys: dict[str, bytes] | None = None,
        state: Path | None = None,
    ):
        """`workdir` holds the rendered files and the login (read by root only); `state` Postfix's own
        tree, which must be reachable by the `postfix` user (default: inside workdir, for callers
        that made workdir themselves)."""
        self.relay = relay
        self.workdir = workdir
        self.state = state or workdir
        self.listen = listen
        self.port = port
        self.source = workdir / "configmap"
        self.secret_dir = workdir / "secret"
        self.dkim_key_dir = workdir / local_dkim.KEY_DIR  # root only, like the pod's Secret mount
        self.opendkim_dir = self.state / "opendkim"  # reached by the opendkim and postfix users
        self.config_dir = self.state / "postfix"
        self.queue_dir = self.state / "queue"
        self.data_dir = self.state / "data"
        self.maillog = self.state / "log" / "maillog"
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}  # more of the pod's environment, e.g. the log copy to stdout
        self.wrapper: list[str] = []  # a command the entrypoint runs under (a test's exec tracer)
        self.output = workdir / "entrypoint.out"
        self.termination_log = workdir / "termination-log"  # the pod's /dev/termination-log
        self._write(secret, extra_files or {})
        if dkim_keys is not None:
            self.write_dkim_keys(dkim_keys)

    def _write(self, secret: dict[str, str] | None, extra: dict[str, str]) -> None:
        """Everything goes through mailrelay.local.files: checked directories, no followed links."""
        files.checked_workdir(self.workdir, mode=0o755 if self.state == self.workdir else 0o700)
        if secret is not None:  # first: a login directory that is not ours stops everything
            self.write_secret(secret)
        files.subdir(self.source)
        for name, text in {**config_files(self.relay.spec), **extra}.items():
            files.write(self.source / name, text.encode())
        if self.state != self.workdir:
            files.checked_workdir(self.state, mode=0o755, what="Postfix state directory")
            files.link(self.workdir / "postfix-state", self.state)
        files.subdir(self.maillog.parent)

    def write_secret(self, secret: dict[str, str]) -> None:
        """The login files, root-only like the pod's Secret mount."""
        files.subdir(self.secret_dir, 0o700)
        files.check_replaceable(*(self.secret_dir / key for key in secret))
        for key, value in secret.items():
            files.write(self.secret_dir / key, value.encode(), 0o600)

    def write_dkim_keys(self, keys: dict[str, bytes]) -> None:
        """The DKIM key Secret's files, root-only like the pod's Secret mount."""
        files.subdir(self.dkim_key_dir, 0o700)
        for name, data in keys.items():
            files.write(self.dkim_key_dir / name, data, 0o400)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": SEARCH_PATH,
            "MAILRELAY_CONFIG_SOURCE": str(self.source),
            "MAILRELAY_SECRET_DIR": str(self.secret_dir),
            "MAILRELAY_DKIM_KEY_DIR": str(self.dkim_key_dir),
            "MAILRELAY_OPENDKIM_DIR": str(self.opendkim_dir),
            "POSTFIX_CONFIG_DIR": str(self.config_dir),
            "POSTFIX_QUEUE_DIR": str(self.queue_dir),
            "POSTFIX_DATA_DIR": str(self.data_dir),
            "MAILRELAY_LISTEN": f"{self.listen}:{self.port}",
            "MAILRELAY_MAILLOG": str(self.maillog),
            "MAILRELAY_PROBE_ADDRESS": self.listen,
            "MAILRELAY_PROBE_PORT": str(self.port),
            "MAILRELAY_DRAIN_LOG_HERE": "1",
            "MAILRELAY_TERMINATION_LOG": str(self.termination_log),
            **self.extra_env,
        }

    def start(self, timeout: float = 30.0) -> None:
        """Run the entrypoint in the background and wait until SMTP answers."""
        with files.fresh(self.output) as out:
            self.process = subprocess.Popen(
                [*self.wrapper, *scripts.command("entrypoint.sh")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalRelayError(f"Postfix did not start:\n{self.output.read_text()}")
            try:
                with socket.create_connection((self.listen, self.port), timeout=1) as sock:
                    # 554 when the listen address itself is outside allowedNetworks: up, and refusing.
                    if sock.recv(64)[:3] in (b"220", b"554"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise LocalRelayError(f"Postfix did not answer on {self.listen}:{self.port} within {timeout}s")

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.config_dir), *args], env=self.env, capture_output=True, text=True, check=False
        )

    def queued(self) -> int:
        """Messages waiting in the queue (not yet delivered or bounced).

        Files move between the directories while they are listed, so they are listed in both orders
        and each queue ID is counted once, as drain.sh does.
        """
        parts = ("maildrop", "incoming", "active", "deferred")
        return len(
            {
                path.name
                for order in (parts, parts[::-1])
                for part in order
                for path in (self.queue_dir / part).rglob("*")
                if path.is_file()
            }
        )

    def log(self) -> str:
        return self.maillog.read_text() if self.maillog.exists() else ""

    def stop(self) -> None:
        """Stop Postfix and everything it started; safe to call twice."""
        self.stop_postfix()

    def restart(self, secret: dict[str, str] | None = None) -> None:
        """Start Postfix again on the same queue (with new Secret files), as a rolled pod would."""
        self.stop_postfix()
        if secret:
            self.write_secret(secret)
        self.start()

    def stop_postfix(self) -> None:
        if self.config_dir.exists():
            self.postfix("stop")
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """Postfix daemons and OpenDKIM keep running briefly after the signal; none may outlive the instance.

        An OpenDKIM still shutting down removes its socket by path on exit, which would take the
        socket of the next instance in the same workdir with it.
        """
        for pid_file in [self.queue_dir / "pid" / "master.pid", *self.opendkim_dir.glob("*.pid")]:
            deadline = time.monotonic() + 10
            while pid_file.exists() and time.monotonic() < deadline:
                try:
                    os.kill(int(pid_file.read_text().split()[0]), 0)
                except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                    break
                time.sleep(0.1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_local(
    relay: MailRelay,
    *,
    port: int,
    listen: str,
    workdir: str | None,
    login: Credentials | None = None,
    secrets: dict[str, dict[str, Any]] | None = None,
) -> int:
    """`mailrelay-operator local`: run the relay in the foreground until interrupted.

    With --workdir the directory keeps its owner and mode (it may be private): it holds the
    rendered files, the login (0700/0600) and a lock, and Postfix's state lives in state_dir_for().
    Without, everything is in a temporary directory of ours that is removed at the end.
    """
    problem = postfix_problem()
    if problem:
        print(f"mailrelay-operator local: {problem}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` and service managers stop it like Ctrl-C does
    if workdir:
        base, state = Path(workdir), state_dir_for(Path(workdir))
    else:
        base = Path(tempfile.mkdtemp(prefix="mailrelay-local-"))
        base.chmod(0o755)  # ours: the Postfix daemons must reach the queue; the login stays 0700 inside
        state = None
    try:
        lock = lock_workdir(base)
    except UnsafePath as exc:
        print(f"mailrelay-operator local: {exc}", file=sys.stderr)
        return 2
    except LocalRelayError as exc:
        print(f"mailrelay-operator local: {exc}", file=sys.stderr)
        return 1
    secret = {"username": login.username, "password": login.password} if login else None
    try:
        try:
            keys, dkim_note = local_dkim.prepare(relay, secrets or {}, base)
            if keys and workdir is None:
                dkim_note += "  (a temporary key: use --workdir to keep it, and its DNS record, across runs)\n"
            instance = LocalPostfix(
                relay, base, listen=listen, port=port, secret=secret, state=state, dkim_keys=keys or None
            )
        except (local_dkim.LocalDkimError, UnsafePath) as exc:
            print(f"mailrelay-operator local: {exc}", file=sys.stderr)
            return 2
        xoauth2 = _xoauth2(relay, base, secrets or {}, instance)
        if isinstance(xoauth2, str):
            print(f"mailrelay-operator local: {xoauth2}", file=sys.stderr)
            return 2
        try:
            return _serve(instance, relay, listen, port, dkim_note)
        finally:
            if xoauth2 is not None:
                xoauth2.stop()
    finally:
        os.close(lock)
        if workdir is None:  # ours, not the user's: leave nothing behind
            shutil.rmtree(base, ignore_errors=True)


def _xoauth2(relay: MailRelay, base: Path, secrets: dict[str, dict[str, Any]], instance: LocalPostfix) -> Any:
    """For an OAuth2 relay: its XOAUTH2 relay and token keeper, started; a message when it cannot start."""
    from mailrelay.api.secret import SecretProblem
    from mailrelay.local.oauth import LocalXOAuth2

    oauth2 = relay.spec.relay.oauth2 if relay.spec.relay else None
    if oauth2 is None:
        return None
    if oauth2.secret not in secrets:
        return f"spec.relay.oauth2.secretRef names Secret {oauth2.secret}, which is not in the file: add it"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    try:
        keeper = LocalXOAuth2(relay, base, secrets[oauth2.secret], port=port)
        keeper.start()
    except SecretProblem as exc:
        return f"Secret {oauth2.secret}: {exc}"
    except RuntimeError as exc:
        return str(exc)
    instance.extra_env["MAILRELAY_XOAUTH2_LISTEN"] = f"127.0.0.1:{port}"
    return keeper


def _serve(instance: LocalPostfix, relay: MailRelay, listen: str, port: int, dkim_note: str = "") -> int:
    secret_note = ""
    if relay.spec.relay and relay.spec.relay.auth_secret:
        secret_note = f"\n  smarthost login: {instance.secret_dir} (username, password; root only)"
    print(
        f"mailrelay-operator local: {relay.namespace}/{relay.name} on {listen}:{port}, "
        f"senders rewritten to @{relay.spec.mail_from_fqdn}\n"
        f"  files: {instance.source}  log: {instance.maillog}{secret_note}\n{dkim_note}"
        f"  try: swaks --server {listen}:{port} --from root@6ba2d5764050 --to you@example.org\n"
        f"  stop with Ctrl-C",
        flush=True,
    )
    try:
        instance.start()
        with instance.maillog.open() as log:
            try:
                while instance.process is not None and instance.process.poll() is None:
                    line = log.readline()
                    if line:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        time.sleep(0.2)
            except KeyboardInterrupt:
                sys.stdout.write(log.read())  # what was logged up to the interrupt
    except KeyboardInterrupt:
        pass  # interrupted while starting
    except LocalRelayError as exc:
        print(f"mailrelay-operator local: {exc}", file=sys.stderr)
        return 1
    finally:
        instance.stop()
    return 0
