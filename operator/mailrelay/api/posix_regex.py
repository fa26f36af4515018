"""Check rewrite patterns with the C library's POSIX regcomp(), the engine Postfix's regexp maps use.

Python's `re` is not POSIX ERE (no [[:alpha:]], different escapes), so a pattern it accepts could
still fail in Postfix, which would take the whole relay down. Asking the real regcomp() is exact.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

_REG_EXTENDED = 1
_REG_ICASE = 2
_REGEX_T_SIZE = 256  # larger than regex_t on every glibc/musl ABI; regcomp only writes into it
_RE_NSUB_OFFSET = 48  # glibc: buffer, allocated, used, syntax, fastmap, translate, then re_nsub


@cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.regcomp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    libc.regerror.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    libc.regfree.argtypes = [ctypes.c_void_p]
    return libc


def _compile(pattern: str) -> tuple[str | None, int]:
    """Compile with regcomp(REG_EXTENDED|REG_ICASE); return (error or None, number of groups)."""
    libc = _libc()
    buffer = ctypes.create_string_buffer(_REGEX_T_SIZE)
    code = libc.regcomp(buffer, pattern.encode(), _REG_EXTENDED | _REG_ICASE)
    if code != 0:
        message = ctypes.create_string_buffer(256)
        libc.regerror(code, buffer, message, len(message))
        return message.value.decode(errors="replace"), 0
    groups = ctypes.c_size_t.from_buffer(buffer, _RE_NSUB_OFFSET).value
    libc.regfree(buffer)
    return None, groups


def delimiter_problem(pattern: str, delimiter: str = "/") -> str | None:
    """Apply Postfix's own scan for the closing delimiter; text after it would escape the pattern."""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if index + 1 == len(pattern):
                return "must not end with a lone backslash"
            index += 2
            continue
        if char == delimiter:
            return f"contains an unescaped {delimiter!r} at position {index}; write it as '\\{delimiter}'"
        index += 1
    return None


def compile_problem(pattern: str) -> str | None:
    """regcomp()'s complaint about `pattern`, or None when it compiles."""
    return _compile(pattern)[0]


def group_count(pattern: str) -> int:
    """Number of capture groups in a valid pattern."""
    error, groups = _compile(pattern)
    if error:
        raise ValueError(error)
    return groups
