"""Run one relay with this machine's Postfix, through the image's own entrypoint.

This is the embedded default when no cluster is configured, and the harness the mail-path tests
and benchmarks use: the files are exactly what the operator puts in the ConfigMap, and the start,
probe and drain scripts are exactly what runs in the pod.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailrelay import postfix
from mailrelay.spec import MailRelay

IMAGE_DIR = Path(os.environ.get("MAILRELAY_IMAGE_DIR", Path(__file__).resolve().parents[2] / "image" / "postfix"))
SEARCH_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"  # Postfix's commands live in sbin
INSTALL_HINT = ("Postfix is not installed. On Debian or Ubuntu, as root:\n"
                "  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections\n"
                "  DEBIAN_FRONTEND=noninteractive apt-get install -y postfix libsasl2-modules")


class LocalRelayError(RuntimeError):
    pass


def postfix_problem() -> str | None:
    """Why a local Postfix cannot run here, or None."""
    if not shutil.which("postfix", path=SEARCH_PATH):
        return INSTALL_HINT
    if os.geteuid() != 0:
        return "Postfix's master must start as root (it drops privileges itself): run this as root."
    if not (IMAGE_DIR / "entrypoint.sh").is_file():
        return f"the relay image scripts are not at {IMAGE_DIR}; set MAILRELAY_IMAGE_DIR to image/postfix"
    return None


class LocalPostfix:
    """A private Postfix instance on loopback with its own config, queue and data directories."""

    def __init__(self, relay: MailRelay, workdir: Path, *, listen: str = "127.0.0.1", port: int = 2525,
                 secret: dict[str, str] | None = None, extra_files: dict[str, str] | None = None):
        self.relay = relay
        self.workdir = workdir
        self.listen = listen
        self.port = port
        self.source = workdir / "configmap"
        self.secret_dir = workdir / "secret"
        self.config_dir = workdir / "postfix"
        self.queue_dir = workdir / "queue"
        self.data_dir = workdir / "data"
        self.maillog = workdir / "log" / "maillog"
        self.process: subprocess.Popen[bytes] | None = None
        self.exporter: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}  # more of the pod's environment, e.g. the log copy to stdout
        self.output = workdir / "entrypoint.out"
        self._write(secret, extra_files or {})

    def _write(self, secret: dict[str, str] | None, extra: dict[str, str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # Postfix's unprivileged daemons must reach the queue and data below
        self.source.mkdir(parents=True, exist_ok=True)
        self.maillog.parent.mkdir(parents=True, exist_ok=True)
        for name, text in {**postfix.config_files(self.relay.spec), **extra}.items():
            (self.source / name).write_text(text)
        if secret is not None:
            self.secret_dir.mkdir(mode=0o700, exist_ok=True)
            for key, value in secret.items():
                (self.secret_dir / key).write_text(value)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ,
                "PATH": SEARCH_PATH,
                "MAILRELAY_CONFIG_SOURCE": str(self.source),
                "MAILRELAY_SECRET_DIR": str(self.secret_dir),
                "POSTFIX_CONFIG_DIR": str(self.config_dir),
                "POSTFIX_QUEUE_DIR": str(self.queue_dir),
                "POSTFIX_DATA_DIR": str(self.data_dir),
                "MAILRELAY_LISTEN": f"{self.listen}:{self.port}",
                "MAILRELAY_MAILLOG": str(self.maillog),
                "MAILRELAY_PROBE_ADDRESS": self.listen,
                "MAILRELAY_PROBE_PORT": str(self.port),
                "MAILRELAY_DRAIN_LOG_HERE": "1",
                **self.extra_env}

    def start(self, timeout: float = 30.0) -> None:
        """Run the entrypoint in the background and wait until SMTP answers."""
        with self.output.open("wb") as out:
            self.process = subprocess.Popen([str(IMAGE_DIR / "entrypoint.sh")], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalRelayError(f"Postfix did not start:\n{self.output.read_text()}")
            try:
                with socket.create_connection((self.listen, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise LocalRelayError(f"Postfix did not answer on {self.listen}:{self.port} within {timeout}s")

    def start_exporter(self, port: int, capabilities: list[str] | None = None) -> str:
        """Run the image's metrics sidecar script against this instance; returns its /metrics URL.

        With `capabilities`, it runs with only those (and no new privileges), as the sidecar does
        under its securityContext.
        """
        env = {**self.env, "MAILRELAY_METRICS_LISTEN": f"{self.listen}:{port}"}
        command = [str(IMAGE_DIR / "metrics.sh")]
        if capabilities is not None:
            bounding = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
            command = ["setpriv", "--no-new-privs", f"--bounding-set={bounding}", *command]
        with (self.workdir / "exporter.out").open("wb") as out:
            self.exporter = subprocess.Popen(command, env=env, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.exporter.poll() is None:
            try:
                socket.create_connection((self.listen, port), timeout=1).close()
                return f"http://{self.listen}:{port}/metrics"
            except OSError:
                time.sleep(0.1)
        raise LocalRelayError(f"the exporter did not start:\n{(self.workdir / 'exporter.out').read_text()}")

    def run_script(self, name: str, *args: str, env: dict[str, str] | None = None,
                   timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run one of the image's scripts (entrypoint.sh, probe.sh, drain.sh) against this instance."""
        return subprocess.run([str(IMAGE_DIR / name), *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, check=False)

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["postfix", "-c", str(self.config_dir), *args], env=self.env, capture_output=True,
                              text=True, check=False)

    def queued(self) -> int:
        """Messages waiting in the queue (not yet delivered or bounced)."""
        return sum(1 for part in ("maildrop", "incoming", "active", "deferred")
                   for path in (self.queue_dir / part).rglob("*") if path.is_file())

    def log(self) -> str:
        return self.maillog.read_text() if self.maillog.exists() else ""

    def stop(self) -> None:
        """Stop Postfix, the exporter and everything they started; safe to call twice."""
        if self.exporter is not None:
            self.exporter.terminate()
            self.exporter.wait(timeout=10)
            self.exporter = None
        self.stop_postfix()

    def restart(self, secret: dict[str, str] | None = None) -> None:
        """Start Postfix again on the same queue (with new Secret files), as a rolled pod would."""
        self.stop_postfix()
        for key, value in (secret or {}).items():
            (self.secret_dir / key).write_text(value)
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
        """Postfix daemons keep running briefly after `stop`; none may outlive the instance."""
        pid_file = self.queue_dir / "pid" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                return
            time.sleep(0.1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_local(relay: MailRelay, *, port: int, listen: str, workdir: str | None) -> int:
    """`mailrelay-operator local`: run the relay in the foreground until interrupted."""
    problem = postfix_problem()
    if problem:
        print(f"mailrelay-operator local: {problem}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` and service managers stop it like Ctrl-C does
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mailrelay-local-"))
    instance = LocalPostfix(relay, base, listen=listen, port=port)
    secret_note = ""
    if relay.spec.relay and relay.spec.relay.auth_secret:
        secret_note = f"\n  smarthost login: put files username and password in {instance.secret_dir}"
    print(f"mailrelay-operator local: {relay.namespace}/{relay.name} on {listen}:{port}, "
          f"senders rewritten to @{relay.spec.mail_from_fqdn}\n"
          f"  files: {instance.source}  log: {instance.maillog}{secret_note}\n"
          f"  try: swaks --server {listen}:{port} --from root@6ba2d5764050 --to you@example.org\n"
          f"  stop with Ctrl-C", flush=True)
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
        if workdir is None:  # ours, not the user's: leave nothing behind
            shutil.rmtree(base, ignore_errors=True)
    return 0
