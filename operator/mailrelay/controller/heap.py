"""Give freed heap pages back to the system after a burst of decoding.

The caches keep each object as compact JSON and decode it when read, so a resync (every relay read
once) or a wave of events leaves many freed blocks of a few kilobytes in glibc's heap, which it keeps
for reuse: the process's RSS then stays at its peak. `malloc_trim(0)` returns the free pages; on a C
library without it (musl) this does nothing.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    """The symbols already loaded into this process (the C library's among them): no search, no process."""
    try:
        lib = ctypes.CDLL(None)
    except OSError:
        return None
    return lib if hasattr(lib, "malloc_trim") else None


def trim() -> bool:
    """Return free heap pages to the system; whether the C library could."""
    lib = _libc()
    if lib is None:
        return False
    lib.malloc_trim(0)
    return True
