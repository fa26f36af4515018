"""Reading MailRelay documents and writing manifests as YAML streams."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mailrelay.api.checker import quote
from mailrelay.api.spec import MailRelay, SpecError, parse
from mailrelay.render import postfix
from mailrelay.version import RELEASED_POSTFIX_IMAGE

MAX_INPUT_BYTES = 4 * 1024 * 1024


class AliasRefused(yaml.YAMLError):
    """A `*name` alias in a MailRelay file: refused before anything expands it."""

    def __init__(self, anchor: str, mark: yaml.Mark):
        super().__init__(anchor)
        self.anchor, self.mark = anchor, mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (last-wins would silently drop what the user wrote) and
    aliases: `*name` repeats a node without copying it, so 9 lines of nested aliases are a billion
    elements to whatever walks or prints the result. A MailRelay never needs one."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasRefused(event.anchor, event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key (a list): construct_mapping reports it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {quote(key)}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read(source: str) -> str:
    raw = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1) if source == "-" else Path(source).read_bytes()
    if len(raw) > MAX_INPUT_BYTES:
        raise SpecError([f"{source}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB; not a MailRelay file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([f"{source}: not UTF-8 text (byte {exc.start}); binary or UTF-16 files are not read"]) from None
    if "\x00" in text:
        raise SpecError([f"{source}: contains NUL bytes; not a text file"])
    return text


def load_documents(source: str) -> list[Any]:
    """All YAML documents of a file, or of stdin when `source` is '-'; empty documents are skipped."""
    text = _read(source)
    try:
        return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]
    except AliasRefused as exc:
        where = f"line {exc.mark.line + 1}, column {exc.mark.column + 1}"
        raise SpecError(
            [
                f"{source}: {where}: the alias {quote('*' + exc.anchor, 40)} is not accepted: "
                "YAML aliases are refused in MailRelay files (write the value out)"
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{source}: not valid YAML: {exc}".replace("\n", " ")]) from None
    except RecursionError:
        raise SpecError([f"{source}: nested too deeply to be a MailRelay"]) from None


def load_relays(source: str, default_image: str = RELEASED_POSTFIX_IMAGE) -> list[MailRelay]:
    """Parse every MailRelay in `source`; raise one SpecError listing all problems of all documents."""
    return load_file(source, default_image)[0]


def load_file(source: str, default_image: str = RELEASED_POSTFIX_IMAGE) -> tuple[list[MailRelay], list[dict[str, Any]]]:
    """The MailRelays of `source`, and the Secrets next to them (local mode reads its login from one).

    Other Kubernetes objects in the same file are skipped; anything that claims to be of our API
    group is checked, so a misspelt kind is an error, not a skip.
    """
    relays: list[MailRelay] = []
    problems: list[str] = []
    everything = load_documents(source)
    secrets = [
        d for d in everything if isinstance(d, dict) and d.get("kind") == "Secret" and d.get("apiVersion") == "v1"
    ]
    documents = [d for d in everything if not _foreign(d)]
    if not documents:
        raise SpecError([f"{source}: no MailRelay document found"])
    for index, doc in enumerate(documents):
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        readable = isinstance(name, str) and len(name) <= 253 and name.isprintable()
        label = f"{source}: {name if readable else f'document {index + 1}'}"
        try:
            relay = parse(doc, default_image)
            postfix.config_files(relay.spec)  # raises UnsafeValue (a SpecError) rather than render it
            relays.append(relay)
        except SpecError as exc:
            problems += [f"{label}: {p}" for p in exc.problems]
    if problems:
        raise SpecError(problems)
    return relays, secrets


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the Postfix files) as literal blocks, so they read like the files."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _foreign(doc: Any) -> bool:
    api_version = doc.get("apiVersion") if isinstance(doc, dict) else None
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("kind"), str)
        and doc.get("kind") != "MailRelay"
        and not (isinstance(api_version, str) and api_version.startswith("mailrelay.dev/"))
    )


def dump(objects: Iterable[dict[str, Any]]) -> str:
    return yaml.dump_all(list(objects), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
