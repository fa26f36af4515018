"""The real `helm` and `kubectl` (or any tool), run from the checkout; a failure shows its output."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from support.paths import ROOT


def run(tools: Path, *command: str) -> str:
    binary = shutil.which(command[0]) or str(tools / command[0])
    result = subprocess.run([binary, *command[1:]], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]
