"""The host harness: a private Postfix run through the relay image's own scripts (mailrelay.local),
plus what only tests need: the metrics sidecar script beside it and any script run on demand."""

from __future__ import annotations

import socket
import subprocess
import time

from mailrelay import scripts
from mailrelay.local.runner import LocalPostfix, LocalRelayError


class HarnessPostfix(LocalPostfix):
    exporter: subprocess.Popen[bytes] | None = None

    def start_exporter(self, port: int, capabilities: list[str] | None = None) -> str:
        """Run the image's metrics sidecar script against this instance; returns its /metrics URL.

        With `capabilities`, it runs with only those (and no new privileges), as the sidecar does
        under its securityContext.
        """
        env = {**self.env, "MAILRELAY_METRICS_LISTEN": f"{self.listen}:{port}"}
        command = scripts.command("metrics.sh")
        if capabilities is not None:
            bounding = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
            command = ["setpriv", "--no-new-privs", f"--bounding-set={bounding}", *command]
        with (self.workdir / "exporter.out").open("wb") as out:
            self.exporter = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.exporter.poll() is None:
            try:
                socket.create_connection((self.listen, port), timeout=1).close()
                return f"http://{self.listen}:{port}/metrics"
            except OSError:
                time.sleep(0.1)
        raise LocalRelayError(f"the exporter did not start:\n{(self.workdir / 'exporter.out').read_text()}")

    def run_script(
        self, name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the image's scripts (entrypoint.sh, probe.sh, drain.sh) against this instance."""
        return subprocess.run(
            [*scripts.command(name), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        """Stop the exporter, then Postfix and everything it started; safe to call twice."""
        if self.exporter is not None:
            self.exporter.terminate()
            self.exporter.wait(timeout=10)
            self.exporter = None
        super().stop()
