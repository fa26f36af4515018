"""The command as installed: `python -m mailrelay`, a process with its exit status and its stderr.

tests/unit/test_bad_input.py checks every kind of bad input in-process; here the process itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_bad_input_on_stdin_too() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailrelay", "validate", "-f", "-"],
        input=b"\xff\xfe\x00",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2 and b"not UTF-8 text" in result.stderr and b"Traceback" not in result.stderr


def test_run_without_a_cluster_says_what_to_do(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": ""}
    result = subprocess.run(
        [sys.executable, "-m", "mailrelay", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "no cluster to talk to" in result.stderr and "mailrelay-operator local" in result.stderr
    assert "Traceback" not in result.stderr
