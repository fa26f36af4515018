"""Write the chart's README.md, whose values table comes from values.yaml (defaults) and
values.schema.json (types and descriptions), so the three cannot drift (`make docs`).

    python hack/chart_readme.py write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "manifests" / "helm" / "mailrelay-operator"
README = CHART / "README.md"

INTRO = """\
# mailrelay-operator

{description}

Generated from `Chart.yaml`, `values.yaml` and `values.schema.json` by `make docs`; a test fails when
it is out of date.

## Install

The operator pod meets the restricted Pod Security Standard. Helm cannot label a namespace it
creates with `--create-namespace`, and a chart cannot own the namespace it is installed into (Helm
stores the release there before any template is applied), so create and label the namespace first:

```sh
kubectl create namespace mailrelay-system
kubectl label namespace mailrelay-system pod-security.kubernetes.io/enforce=restricted
helm install mailrelay-operator manifests/helm/mailrelay-operator -n mailrelay-system
helm test mailrelay-operator -n mailrelay-system   # the operator answers on /healthz through its Service
```

The MailRelay CRD is in `crds/` (Helm installs it once and never upgrades or deletes it; apply
`crds/mailrelay.dev_mailrelays.yaml` by hand on upgrades). Kubernetes {kube_version} is required.

With `replicas` above 1 the replicas elect a leader with a Lease named after the release in the
release namespace (`kubectl get lease -n <namespace>` shows the holder): only the leader reconciles;
another takes over about 20 seconds after the leader dies, and at once when it stops normally.

Names: cluster-scoped objects (ClusterRole, ClusterRoleBinding) and the Roles in `watchNamespaces`
are named `<fullname>-<release namespace>`, so releases of the same name in different namespaces
do not collide.

## Values

| key | type | default | description |
|---|---|---|---|
"""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    kind = schema.get("type", "any")
    if kind == "array" and "items" in schema:
        return f"[]{_type(schema['items'])}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map[string]{_type(schema['additionalProperties'])}"
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def rows(schema: dict[str, Any], values: dict[str, Any], prefix: str = "") -> list[str]:
    """One row per value; objects with their own properties (image, serviceAccount) row by row."""
    out = []
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if sub.get("type") == "object" and "properties" in sub and "$ref" not in sub:
            out += rows(sub, values.get(key) or {}, f"{path}.")
            continue
        default = json.dumps(values[key], separators=(", ", ": ")) if key in values else ""
        out.append(f"| `{path}` | {_type(sub)} | `{_cell(default)}` | {_cell(sub.get('description', ''))} |")
    return out


def render() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    intro = INTRO.format(description=chart["description"], kube_version=chart["kubeVersion"])
    return intro + "\n".join(rows(schema, values)) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["write"]:
        sys.exit("usage: chart_readme.py write")
    README.write_text(render())
