"""The command as installed: `python -m mailrelay`, a process with its exit status and its stderr.

tests/unit/test_bad_input.py checks every kind of bad input in-process; here the process itself.
"""

from __future__ import annotations

import subprocess
import sys


def test_bad_input_on_stdin_too() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailrelay", "validate", "-f", "-"],
        input=b"\xff\xfe\x00",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2 and b"not UTF-8 text" in result.stderr and b"Traceback" not in result.stderr
