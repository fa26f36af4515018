"""Local mode's files, handled so that another local user cannot redirect, plant or read them.

Local mode runs as root, in a --workdir a user names. Issue 23: with a workdir another local user
had prepared, a symlinked lock file made root truncate a root-owned file, a symlinked
dkim-<selector>.txt made root overwrite another, the smarthost password landed in a file that user
could read, and a DKIM key planted there was used to sign. So:

- the workdir, and every directory above it, must be owned by root or the running user and writable
  by nobody else (a sticky directory such as /tmp is fine above it), and the workdir itself must be
  the running user's; then nobody else can add, replace or rename anything in it, which also makes
  the shell scripts' plain path writes (the drain's termination log) safe;
- a file or directory we find in it must be the running user's, a regular file or directory (never
  a symlink), with one link, and writable by nobody else; a secret or key we read must be private;
- files are written as a new file beside the target and renamed over it, never opened through a
  path that could be a symlink (O_NOFOLLOW, O_EXCL);
- a key or secret we did not create is never used: not ours means refused, with what to do.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import tempfile
from pathlib import Path
from typing import IO


class UnsafePath(ValueError):
    """A workdir, or a file in it, that another user made or could change; the message says which and why."""


def _who(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _problem(path: Path, info: os.stat_result, *, own: bool, private: bool = False) -> str | None:
    """Why `info` (an lstat) is not safe to trust, or None."""
    me = os.geteuid()
    owners = (me,) if own else (0, me)
    if info.st_uid not in owners:
        return f"it is owned by {_who(info.st_uid)}, not by {_who(me)}" + ("" if own else " or root")
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if private and info.st_mode & 0o077:
        return f"its mode {stat.S_IMODE(info.st_mode):04o} lets others in: it must be private (0600 or 0400)"
    if writable and not (info.st_mode & stat.S_ISVTX and not own and stat.S_ISDIR(info.st_mode)):
        return f"its mode {stat.S_IMODE(info.st_mode):04o} lets others write to it"
    if stat.S_ISREG(info.st_mode) and info.st_nlink != 1:
        return f"it has {info.st_nlink} hard links: it may be another file too"
    return None


def checked_workdir(path: Path, *, mode: int = 0o700, what: str = "workdir") -> Path:
    """`path` as an absolute directory, created with `mode` if missing; UnsafePath unless it is the
    running user's, writable by nobody else, and nobody else can replace it through a directory above."""
    path = Path(os.path.abspath(path))
    if not os.path.lexists(path):
        _checked_ancestors(path.parent, create=True)
        with contextlib.suppress(FileExistsError):  # made meanwhile: checked below like any existing one
            os.mkdir(path, mode)
    _checked_ancestors(path.parent)
    _checked_dir(path, own=True, what=what)
    return path


def _checked_ancestors(path: Path, *, create: bool = False) -> None:
    """Every directory from / down to `path`: root's or ours, writable by nobody else unless sticky.

    A symlink on the way is followed only if root or we made it (its directory is already checked);
    its target is then checked the same way.
    """
    current = Path("/")
    for part in path.parts[1:]:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            if not create:
                raise UnsafePath(f"{current} does not exist") from None
            os.mkdir(current, 0o755)
            info = os.lstat(current)
        if stat.S_ISLNK(info.st_mode):
            problem = _problem(current, info, own=False)
            if problem:
                raise UnsafePath(f"{current} is a symbolic link another user controls: {problem}")
            _checked_ancestors(current.resolve(strict=True), create=False)
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafePath(f"{current} is not a directory")
        problem = _problem(current, info, own=False)
        if problem:
            raise UnsafePath(f"{current}, a directory above the workdir, cannot be trusted: {problem}")


def _checked_dir(path: Path, *, own: bool, what: str, private: bool = False) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"the {what} {path} is a symbolic link; give the real directory")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"the {what} {path} is not a directory")
    problem = _problem(path, info, own=own, private=private)
    if problem:
        raise UnsafePath(
            f"refusing the {what} {path}: {problem}. It must belong to the user running local mode and be "
            "writable by nobody else (remove it, or choose another --workdir)"
        )


def has_dir(path: Path, *, private: bool = False) -> bool:
    """Whether a directory of ours is at `path`: False when nothing is, UnsafePath when another's is."""
    if not os.path.lexists(path):
        return False
    _checked_dir(path, own=True, what="directory", private=private)
    return True


def subdir(path: Path, mode: int = 0o755) -> Path:
    """A directory of ours inside a checked workdir: made with `mode`, or found ours and safe, then set to `mode`."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        _checked_dir(path, own=True, what="directory", private=not mode & 0o077)
    os.chmod(path, mode)  # a directory of ours in a checked workdir: no link to follow
    return path


def _checked_target(path: Path, *, private: bool = False) -> bool:
    """True when `path` exists as a file of ours (safe to replace or read), False when absent."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{path} is a symbolic link, which local mode never follows: remove it")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(f"{path} is not a regular file: remove it")
    problem = _problem(path, info, own=True, private=private)
    if problem:
        raise UnsafePath(f"{path} was not made by local mode for this user: {problem}; remove it")
    return True


def check_replaceable(*paths: Path) -> None:
    """Refuse before writing any of `paths` when one of them is there and not ours (no half-written set)."""
    for path in paths:
        _checked_target(path)


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` as a new file in its directory (O_EXCL, never through a link) renamed over the old one."""
    _checked_target(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            fd = -1
            out.write(data)
        os.rename(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(temporary).unlink(missing_ok=True)
        raise


def fresh(path: Path) -> IO[bytes]:
    """A new, empty file of ours at `path` opened to append (whatever was there is replaced, never followed)."""
    write(path, b"", 0o644)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC), "ab")


def read_own(path: Path, *, private: bool = True) -> bytes | None:
    """What a file of ours holds (a key or a login kept from an earlier run); None when there is none,
    UnsafePath when someone else made it or could have changed it."""
    if not _checked_target(path, private=private):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        problem = None if stat.S_ISREG(info.st_mode) else "not a regular file"
        problem = problem or _problem(path, info, own=True, private=private)
        if problem:  # replaced between the check and the open
            raise UnsafePath(f"{path} was not made by local mode for this user: {problem}; remove it")
        return source.read()


def open_lock(path: Path) -> int:
    """The lock file, opened without following a link and refused unless it is ours."""
    _checked_target(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UnsafePath(f"{path} cannot be opened safely ({exc.strerror}): remove it") from None
    problem = _problem(path, os.fstat(fd), own=True)
    if problem:
        os.close(fd)
        raise UnsafePath(f"{path} was not made by local mode for this user: {problem}; remove it")
    return fd


def link(path: Path, target: Path) -> None:
    """Make `path` a symlink to `target`, replacing an older link of ours (renamed over, never followed)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and (not stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid()):
        raise UnsafePath(f"{path} was not made by local mode for this user: remove it")
    temporary = path.parent / f".{path.name}.{os.getpid()}"
    Path(temporary).unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.rename(temporary, path)
