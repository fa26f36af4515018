"""Write the MailRelay API reference (Markdown) from the CRD's schema, so the two cannot drift.

python hack/apidoc.py crds/mailrelay.dev_mailrelays.yaml > docs/api-reference.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

# Fields that embed an upstream Kubernetes type: documented by name, not field by field.
UPSTREAM = {"spec.affinity": "core/v1 Affinity", "spec.topologySpreadConstraints": "[]core/v1 TopologySpreadConstraint"}


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("enum", "one of"),
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("pattern", "matches"),
    ):
        if key in schema:
            value = schema[key]
            text = ", ".join(f"`{v}`" for v in value) if key == "enum" else f"`{value}`"
            parts.append(f"{label} {text}")
    parts += [f"rule: {rule['message']}" for rule in schema.get("x-kubernetes-validations", [])]
    return "; ".join(parts)


def _type(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = schema.get("type", "object")
    if kind == "array":
        return f"[]{_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map[string]{_type(schema['additionalProperties'])}"
    return str(kind)


def _rows(schema: dict[str, Any], prefix: str, required: set[str]) -> list[str]:
    rows = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        default = f"`{json.dumps(sub['default'])}`" if "default" in sub else ""
        description = " ".join(str(sub.get("description", "")).split()).replace("|", "\\|")
        flag = " (required)" if name in required else ""
        rows.append(
            f"| `{path}`{flag} | {UPSTREAM.get(path) or _type(sub)} | {default} | {description} | "
            f"{_constraints(sub).replace('|', chr(92) + '|')} |"
        )
        if path in UPSTREAM:
            continue
        target = sub.get("items", sub) if sub.get("type") == "array" else sub
        rows += _rows(target, f"{path}[]" if sub.get("type") == "array" else path, set(target.get("required", [])))
    return rows


def _spec_rules(spec: dict[str, Any]) -> list[str]:
    rules = [r["message"] for r in spec.get("x-kubernetes-validations", [])]
    return ["Rules across fields: " + "; ".join(rules) + ".", ""] if rules else []


def render(crd: dict[str, Any]) -> str:
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    names = crd["spec"]["names"]
    group = crd["spec"]["group"]
    header = "| field | type | default | description | validation |\n|---|---|---|---|---|"
    lines = [
        f"# {names['kind']} API reference ({group}/{version['name']})",
        "",
        "Generated from `crds/mailrelay.dev_mailrelays.yaml` by `make docs`; a test fails when it is out of date.",
        "",
        f"Kind `{names['kind']}`, plural `{names['plural']}`, short name `{', '.join(names.get('shortNames', []))}`,"
        f" {crd['spec']['scope'].lower()}.",
        "",
        " ".join(str(schema.get("description", "")).split()),
        "",
        "Object-level rules: " + "; ".join(r["message"] for r in schema.get("x-kubernetes-validations", [])) + ".",
        "",
        "## spec",
        "",
        *_spec_rules(schema["properties"]["spec"]),
        header,
        *_rows(schema["properties"]["spec"], "spec", set(schema["properties"]["spec"].get("required", []))),
        "",
        "## status",
        "",
        "Written by the operator only. Conditions follow kstatus: `Ready` (summary), `Reconciling` (work under "
        "way), `Stalled` (needs a person); each has `observedGeneration` and a `lastTransitionTime` that moves "
        "only when its status flips.",
        "",
        header,
        *_rows(schema["properties"]["status"], "status", set()),
        "",
        "## Printer columns",
        "",
        "| column | JSONPath |\n|---|---|",
        *[f"| {c['name']} | `{c['jsonPath']}` |" for c in version.get("additionalPrinterColumns", [])],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0] if args else "crds/mailrelay.dev_mailrelays.yaml")
    sys.stdout.write(render(yaml.safe_load(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
