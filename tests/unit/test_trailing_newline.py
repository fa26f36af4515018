"""Every string a relay's spec carries, given a trailing newline, is refused (issue 23, class 6).

Python's `$` matches before a final newline, so a `re.match` with `...$` lets `"mail\n"` through;
the operator validates with whole-string matches only. The specs walked are the shared samples and
every MailRelay in examples/, so a new field is covered as soon as an example uses it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from mailrelay.api.spec import SpecError, parse

from support.samples import GOOD, example_relays

# Free text by design: annotation values may hold any text, newlines included (Kubernetes allows
# them), and the operator writes them into no file, only into the pod template's metadata.
FREE_TEXT = ("spec.podAnnotations.",)

Path = tuple[str | int, ...]


def string_leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, bool]]:
    """(path, is_key) of every string in `value`: values, and the keys of maps."""
    if isinstance(value, str):
        yield path, False
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), True
            yield from string_leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from string_leaves(item, (*path, i))


def with_newline(obj: dict[str, Any], path: Path, is_key: bool) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    parent: Any = changed
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if is_key:
        assert isinstance(last, str)
        parent[last + "\n"] = parent.pop(last)
    else:
        parent[last] = parent[last] + "\n"
    return changed


def dotted(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def cases() -> list[Any]:
    seen: set[tuple[str, bool]] = set()
    out = []
    for obj in [*GOOD, *example_relays()]:
        for path, is_key in string_leaves(obj.get("spec", {}), ("spec",)):
            name = dotted(path)
            if name.startswith(FREE_TEXT) and not is_key:
                continue
            if (name, is_key) in seen:
                continue
            seen.add((name, is_key))
            out.append(pytest.param(obj, path, is_key, id=f"{name}{' (key)' if is_key else ''}"))
    return out


CASES = cases()


def test_the_walk_covers_the_fields_that_let_newlines_through_before() -> None:
    names = {c.id for c in CASES}
    for field in (
        "spec.dkim.selector",
        "spec.priorityClassName",
        "spec.imagePullSecrets[0].name",
        "spec.podLabels.cost-center",
        "spec.tolerations[0].key",
        "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey",
    ):
        assert field in names, f"no sample carries {field}: add it to tests/support/samples.py"
    assert any(n.startswith("spec.clients") for n in names)


@pytest.mark.parametrize(("obj", "path", "is_key"), CASES)
def test_a_trailing_newline_is_refused(obj: dict[str, Any], path: Path, is_key: bool) -> None:
    parse(obj)  # the sample itself is valid
    with pytest.raises(SpecError):
        parse(with_newline(obj, path, is_key))
