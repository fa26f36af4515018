"""Reading MailRelay documents and writing manifests as YAML streams."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mailrelay.spec import MailRelay, SpecError, parse


def load_documents(source: str) -> list[Any]:
    """All YAML documents of a file, or of stdin when `source` is '-'; empty documents are skipped."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise SpecError([f"{source}: not valid YAML: {exc}".replace("\n", " ")]) from exc


def load_relays(source: str) -> list[MailRelay]:
    return load_relays_and_others(source)[0]


def load_relays_and_others(source: str) -> tuple[list[MailRelay], list[Any]]:
    """Parse every MailRelay in `source`; raise one SpecError listing all problems of all documents.

    Other Kubernetes objects in the same file (a Secret next to its relay) are returned as they are;
    anything that claims to be of our API group is checked, so a misspelt kind is an error, not a skip.
    """
    relays: list[MailRelay] = []
    problems: list[str] = []
    everything = load_documents(source)
    others = [d for d in everything if _foreign(d)]
    documents = [d for d in everything if not _foreign(d)]
    if not documents:
        raise SpecError([f"{source}: no MailRelay document found"])
    for index, doc in enumerate(documents):
        name = doc.get("metadata", {}).get("name") if isinstance(doc, dict) else None
        label = f"{source}: {name or f'document {index + 1}'}"
        try:
            relays.append(parse(doc))
        except SpecError as exc:
            problems += [f"{label}: {p}" for p in exc.problems]
    if problems:
        raise SpecError(problems)
    return relays, others


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the Postfix files) as literal blocks, so they read like the files."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _foreign(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("kind"), str) and doc.get("kind") != "MailRelay" \
        and not str(doc.get("apiVersion", "")).startswith("mailrelay.dev/")


def dump(objects: Iterable[dict[str, Any]]) -> str:
    return yaml.dump_all(list(objects), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
