"""`make cluster`'s command line, for tools/controlplane and tools/node alike: a fresh folder, start, say where
things are, watch the processes until Ctrl-C, stop, and remove the kubeconfig that scripts wait for."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .build import BuildError
from .cluster import ROOT


def parse(prog: str, description: str | None, more: Callable[[argparse.ArgumentParser], object]) -> argparse.Namespace:
    """The options (--dir, and those `more` adds), with the folder --dir names emptied: a fresh cluster each time."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster", help="state, logs and kubeconfig")
    more(parser)
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    return args


def install_signal_handlers() -> None:
    """SIGINT (also when a non-interactive shell started us with it ignored), SIGTERM and SIGHUP stop it."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


class Foreground(Protocol):
    def start(self) -> object: ...
    def check_running(self) -> None: ...
    def stop(self) -> None: ...


def run_in_foreground(what: str, running: Foreground, ready: Callable[[], str], kubeconfig: Path) -> int:
    """`make cluster`: start, print what `ready()` says, and watch until Ctrl-C (or SIGTERM, SIGHUP); then stop
    and remove `kubeconfig`, which scripts wait for. The exit status: 1 when the binaries cannot be built."""
    install_signal_handlers()
    try:
        running.start()
        print(ready(), flush=True)
        while True:
            running.check_running()
            time.sleep(1)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stopping the {what}", file=sys.stderr)
        return 0
    finally:
        running.stop()
        kubeconfig.unlink(missing_ok=True)
