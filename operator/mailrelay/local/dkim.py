"""Local mode's DKIM keys: from a Secret in the relay's own YAML file, or generated into the workdir.

A generated key is kept in the workdir, so running again with the same --workdir signs with the key
whose record was published. The records to publish are printed and written to dkim-<selector>.txt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailrelay.api import dkim
from mailrelay.api.spec import MailRelay
from mailrelay.local import files
from mailrelay.render.relay import dkim_secret_name

KEY_DIR = "dkim-key"  # the stand-in for the pod's Secret mount, under the workdir


class LocalDkimError(ValueError):
    pass


def secrets_in(documents: list[Any]) -> dict[str, dict[str, Any]]:
    """The v1 Secrets among a file's documents, by name."""
    return {
        d["metadata"]["name"]: d
        for d in documents
        if isinstance(d, dict)
        and d.get("kind") == "Secret"
        and d.get("apiVersion") == "v1"
        and isinstance(d.get("metadata"), dict)
        and isinstance(d["metadata"].get("name"), str)
    }


def _secret_bytes(secret: dict[str, Any]) -> dict[str, bytes]:
    data = dkim.decode_secret(secret)
    for key, value in (secret.get("stringData") or {}).items():
        data[key] = str(value).encode()
    return data


def prepare(relay: MailRelay, secrets: dict[str, dict[str, Any]], workdir: Path) -> tuple[dict[str, bytes], str]:
    """The key files to sign with and a note for the user; LocalDkimError when no usable key exists,
    files.UnsafePath when a key or record file in the workdir is not this user's own."""
    spec = relay.spec.dkim
    name = dkim_secret_name(relay)
    if spec is None or name is None:
        return {}, ""
    stored = workdir / KEY_DIR
    if name in secrets:
        data, origin = _secret_bytes(secrets[name]), f"Secret {name} from the file"
    elif spec.key_secret:
        raise LocalDkimError(
            f"spec.dkim.keySecretRef names Secret {name}: add it to the same YAML file "
            "(a v1 Secret document with the key rsa.private"
            f"{' and ed25519.private' if spec.key_type == 'Ed25519' else ''})"
        )
    else:
        data, origin = {}, f"generated, kept in {stored}"
        for algorithm, file in dkim.needed(spec).items():
            # a key only if this user made it (files.read_own refuses one planted by someone else)
            kept = files.read_own(stored / file) if files.has_dir(stored, private=True) else None
            data[file] = kept if kept is not None else dkim.generate(algorithm, spec.rsa_bits)
    try:
        records = dkim.records(spec, data, name)
    except dkim.KeyProblem as exc:
        raise LocalDkimError(str(exc)) from None
    text = "".join(f"{r.as_status()['zone']}\n" for r in records)
    target = workdir / f"dkim-{spec.selector}.txt"
    files.write(target, text.encode())
    note = f"  DKIM: signing as {spec.domain} with the key {origin}\n  publish in DNS (also in {target}):\n" + "".join(
        f"    {line}\n" for line in text.splitlines()
    )
    return {file: data[file] for file in dkim.needed(spec).values()}, note
