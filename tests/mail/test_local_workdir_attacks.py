"""`mailrelay-operator local --workdir` against another local user who prepared (or can change) the workdir.

Issue 23, each attack played by a throwaway Unix user (useradd, then setpriv to drop to it) while
root runs local mode: a symlinked lock file (root truncated a root-owned file), a symlinked
dkim-<selector>.txt (root overwrote another), a pre-created password file (the login landed where
that user could read it), a planted DKIM key (used to sign, its record printed to publish). Each
is tried in a workdir that user made, one root made writable by others, one root took over with the
planted files still inside, and one below a directory that user owns. Every run must refuse with one
clear line, leave the victims' files as they were and write the login nowhere.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mailrelay.api import dkim

from support.samples import relay_object

PASSWORD = "s3cret pass"
PRECIOUS = b"root's own file, not to be touched\n"


@pytest.fixture(scope="module")
def mallory() -> Iterator[pwd.struct_passwd]:
    """A throwaway local user, removed afterwards."""
    name = f"mr-mallory-{os.getpid() % 100000}"
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", name],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def as_user(user: pwd.struct_passwd, script: str, stdin: bytes = b"") -> None:
    subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--", "sh", "-ec", script],
        input=stdin,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def place(mallory: pwd.struct_passwd) -> Iterator[dict[str, Path]]:
    """A shared sticky directory (like /tmp) for the workdirs, root-only victims, the relay file, a state root."""
    shared = Path(tempfile.mkdtemp(prefix="mailrelay-attack-"))
    shared.chmod(0o1777)
    private = Path(tempfile.mkdtemp(prefix="mailrelay-victims-"))  # 0700, root's
    for name in ("victim-lock", "victim-record"):
        (private / name).write_bytes(PRECIOUS)
    key = private / "mallory.key"  # the other user's own key, given to them on stdin
    key.write_bytes(dkim.generate("rsa", 2048))
    relay = relay_object(
        {
            "mailFromFQDN": "local.example.com",
            "dkim": {"selector": "loc"},
            "relay": {"host": "127.0.0.1", "port": 2525, "tls": "None", "authSecretRef": {"name": "login"}},
        },
        uid=None,
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "login"},
        "stringData": {"username": "relay", "password": PASSWORD},
    }
    config = private / "relay.yaml"
    config.write_text(yaml.safe_dump_all([relay, secret]))
    yield {"shared": shared, "private": private, "config": config, "key": key, "state": private / "state"}
    shutil.rmtree(shared, ignore_errors=True)
    shutil.rmtree(private, ignore_errors=True)


# What another user plants in the workdir; {work} and {private} are filled in.
PLANTS = {
    "symlinked lock file": "ln -s {private}/victim-lock {work}/.mailrelay-local.lock",
    "symlinked dkim record": "ln -s {private}/victim-record {work}/dkim-loc.txt",
    "pre-created password file": "mkdir -m 0777 {work}/secret && touch {work}/secret/password "
    "&& chmod 0666 {work}/secret/password",
    "planted dkim key": "mkdir -m 0755 {work}/dkim-key && cat > {work}/dkim-key/rsa.private",  # the key on stdin
}
PLANTED_NAMES = {".mailrelay-local.lock", "dkim-loc.txt", "secret", "password", "dkim-key", "rsa.private"}
# The refusal each plant meets once the workdir itself is root's and private ("taken over").
TAKEN_OVER = {
    "symlinked lock file": "{work}/.mailrelay-local.lock is a symbolic link, which local mode never follows",
    "symlinked dkim record": "{work}/dkim-loc.txt is a symbolic link, which local mode never follows",
    "pre-created password file": "refusing the directory {work}/secret: it is owned by {user}",
    "planted dkim key": "refusing the directory {work}/dkim-key: it is owned by {user}",
}


def run_local(place: dict[str, Path], workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailrelay", "local", "-f", str(place["config"]), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MAILRELAY_LOCAL_STATE": str(place["state"])},
    )


def assert_refused_and_untouched(place: dict[str, Path], result: subprocess.CompletedProcess[str], want: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert want in result.stderr, result.stderr
    for name in ("victim-lock", "victim-record"):
        assert (place["private"] / name).read_bytes() == PRECIOUS, name
    for path in place["shared"].rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert PASSWORD.encode() not in path.read_bytes(), path  # the login was written nowhere
    assert not place["state"].exists()  # Postfix never started
    made = {p.name for p in place["shared"].rglob("*")} - {"work", "parent", *PLANTED_NAMES}
    assert made <= {".mailrelay-local.lock"}, made  # nothing but our own lock file in the workdir


def plant(mallory: pwd.struct_passwd, place: dict[str, Path], attack: str, work: Path) -> None:
    script = PLANTS[attack].format(work=work, private=place["private"])
    as_user(mallory, script, stdin=place["key"].read_bytes())


def prepared(mallory: pwd.struct_passwd, place: dict[str, Path], attack: str) -> Path:
    """A workdir the other user made, with `attack` planted in it."""
    work = place["shared"] / "work"
    as_user(mallory, f"mkdir -m 0755 {work}")
    plant(mallory, place, attack, work)
    return work


def who(user: pwd.struct_passwd) -> str:
    return f"{user.pw_name} (uid {user.pw_uid})"


@pytest.mark.parametrize("attack", PLANTS)
def test_a_workdir_another_user_made_is_refused(
    mallory: pwd.struct_passwd, place: dict[str, Path], attack: str
) -> None:
    work = prepared(mallory, place, attack)
    assert_refused_and_untouched(
        place, run_local(place, work), f"refusing the workdir {work}: it is owned by {who(mallory)}"
    )


@pytest.mark.parametrize("attack", PLANTS)
def test_a_workdir_others_may_write_is_refused(mallory: pwd.struct_passwd, place: dict[str, Path], attack: str) -> None:
    work = place["shared"] / "work"
    work.mkdir()
    work.chmod(0o777)
    plant(mallory, place, attack, work)
    result = run_local(place, work)
    assert_refused_and_untouched(place, result, f"refusing the workdir {work}: its mode 0777 lets others write to it")


@pytest.mark.parametrize("attack", PLANTS)
def test_what_another_user_planted_is_refused_after_a_takeover(
    mallory: pwd.struct_passwd, place: dict[str, Path], attack: str
) -> None:
    """The workdir passes (root's, 0700), the files inside are still the other user's: each is refused."""
    work = prepared(mallory, place, attack)
    os.chown(work, 0, 0)
    work.chmod(0o700)
    assert_refused_and_untouched(place, run_local(place, work), TAKEN_OVER[attack].format(work=work, user=who(mallory)))


@pytest.mark.parametrize("attack", ["pre-created password file", "planted dkim key"])
def test_a_planted_file_in_a_directory_of_ours_is_refused(
    mallory: pwd.struct_passwd, place: dict[str, Path], attack: str
) -> None:
    """Directory and workdir taken over too: the file itself, still the other user's, is refused."""
    work = prepared(mallory, place, attack)
    inner = work / ("secret" if "password" in attack else "dkim-key")
    for directory in (work, inner):
        os.chown(directory, 0, 0)
        directory.chmod(0o700)
    planted = next(inner.iterdir())
    before = planted.read_bytes()
    result = run_local(place, work)
    assert_refused_and_untouched(place, result, f"{planted} was not made by local mode for this user: it is owned by")
    assert planted.read_bytes() == before  # neither read into a signature nor written


def test_a_workdir_below_a_directory_another_user_owns_is_refused(
    mallory: pwd.struct_passwd, place: dict[str, Path]
) -> None:
    """Root's own private workdir, but its parent is the other user's: they could swap it for another."""
    parent = place["shared"] / "parent"
    as_user(mallory, f"mkdir -m 0755 {parent}")
    work = parent / "work"
    result = run_local(place, work)
    assert_refused_and_untouched(
        place, result, f"{parent}, a directory above the workdir, cannot be trusted: it is owned by {mallory.pw_name}"
    )
    assert not work.exists()
