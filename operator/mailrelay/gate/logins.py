"""The egress Postfix's side of tenant logins: Cyrus SASL's sasldb, its TLS key, the hand-off login.

`build` runs from the entrypoint before Postfix starts; `watch` after, for the pod's life: when the
tenant files in the ConfigMap mount change (the kubelet swaps them whole), it copies them into
Postfix's configuration, builds a new sasldb beside the old one, renames it into place and reloads
Postfix, so a tenant added or revoked takes effect without a restart and without losing a session.
Passwords go to saslpasswd2 on its standard input, never in an argument list or a log.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import tenants

SENDER_LOGINS = "sender_logins"  # the regexp map render.postfix writes: sender domain → owner logins
TENANT_FILES = (tenants.FILE, SENDER_LOGINS)  # what may change without a restart
TLS_FILES = ("tls.crt", "tls.key")
SASL_DIR = "sasl"  # Debian's Postfix reads Cyrus' smtpd.conf from $config_directory/sasl
SASL_PASSWORDS = "sasl_passwd"  # the smtp client's password map (the entrypoint writes the smarthost's)
WATCH_SECONDS = 2.0


def _postconf(config_dir: Path, name: str) -> str:
    found = subprocess.run(
        ["postconf", "-c", str(config_dir), "-h", name], capture_output=True, text=True, check=True
    ).stdout
    return found.strip()


def _private(path: Path, text: str, mode: int) -> None:
    """Write `text` to a new file created with `mode`, then put it in place."""
    new = path.with_name(path.name + ".new")
    new.unlink(missing_ok=True)
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(new, path)


def build(source: Path, config_dir: Path, egress_dir: Path, handoff_target: str) -> int:
    """Everything Postfix needs to serve tenant logins; returns how many tenants can log in."""
    for name in TENANT_FILES:
        shutil.copyfile(source / name, config_dir / name)
    for name in TLS_FILES:
        _private(config_dir / name, (egress_dir / name).read_text(), 0o400 if name.endswith(".key") else 0o444)
    key = tenants.decode_key((egress_dir / tenants.LOGIN_KEY).read_bytes())
    document = tenants.load((config_dir / tenants.FILE).read_text())
    sasl = config_dir / SASL_DIR
    sasl.mkdir(mode=0o755, exist_ok=True)
    database = sasl / "sasldb2"
    (sasl / "smtpd.conf").write_text(
        f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {database}\n"
    )
    new = sasl / "sasldb2.new"
    new.unlink(missing_ok=True)
    logins = [(t.login, tenants.password(key, t.login, t.uid)) for t in document.tenants]
    logins.append((tenants.HANDOFF_LOGIN, tenants.password(key, tenants.HANDOFF_LOGIN, "")))
    for login, password in logins:
        subprocess.run(
            ["saslpasswd2", "-p", "-c", "-f", str(new), "-u", document.realm, login],
            input=password,
            text=True,
            check=True,
            capture_output=True,
        )
    owner = pwd.getpwnam(_postconf(config_dir, "mail_owner"))
    os.chown(new, owner.pw_uid, owner.pw_gid)
    os.chmod(new, 0o400)
    os.replace(new, database)
    _handoff_login(config_dir, handoff_target, logins[-1][1])
    return len(document.tenants)


def _handoff_login(config_dir: Path, target: str, password: str) -> None:
    """The drain hands the queue to the other egress replicas through their Service: with this login,
    which may send as anyone (its messages were checked where they first came in)."""
    if not target:
        return
    host, _, port = target.rpartition(":")
    key = f"[{host}]:{port}"
    path = config_dir / SASL_PASSWORDS
    lines = path.read_text().splitlines() if path.exists() else []
    lines = [line for line in lines if line.split(" ", 1)[0] != key]
    lines.append(f"{key} {tenants.HANDOFF_LOGIN}:{password}")
    _private(path, "\n".join(lines) + "\n", 0o600)


def _digest(source: Path) -> str:
    digest = hashlib.sha256()
    for name in TENANT_FILES:
        try:
            digest.update((source / name).read_bytes() + b"\0")
        except OSError:
            digest.update(b"missing\0")
    return digest.hexdigest()


def watch(source: Path, config_dir: Path, egress_dir: Path, handoff_target: str) -> None:
    """Forever: on a change of the tenant files, build again and reload Postfix."""
    seen = _digest(source)
    while True:
        time.sleep(WATCH_SECONDS)
        now = _digest(source)
        if now == seen:
            continue
        try:
            count = build(source, config_dir, egress_dir, handoff_target)
            subprocess.run(["postfix", "-c", str(config_dir), "reload"], capture_output=True, check=True)
        except (OSError, ValueError, subprocess.CalledProcessError) as exc:
            print(f"mailrelay-logins: the new tenant list is not in use yet: {exc}", file=sys.stderr, flush=True)
            continue  # tried again at the next change or tick
        seen = now
        print(f"mailrelay-logins: {count} tenant login(s) in use", flush=True)
