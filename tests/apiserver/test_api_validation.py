"""The shipped CRD on the real kube-apiserver: served, printed, and refusing what the operator refuses.

The invalid relays are the one table the operator's own validation and the CRD's are tested with
(support/invalid_specs.py), so a row added there is checked here too. Each row refused by the CRD
must be refused here, and the apiserver's message must name the field the operator names (or the
object holding it, where a CEL rule on that object decides); a row refused by the operator only
must be stored here, as its gap says.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailrelay.api.spec import SpecError, parse

from controlplane import ControlPlane
from support.invalid_specs import INVALID, Invalid
from support.paths import CRD_PATH, ROOT
from support.samples import GOOD, relay_object
from support.shipped_operator import established

NAMESPACE = "validation"
RELAYS = "/apis/mailrelay.dev/v1alpha1/namespaces/{namespace}/mailrelays?fieldValidation=Strict"
_names = (f"case-{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        if yaml.safe_load(path.read_text()).get("kind") == "CustomResourceDefinition":
            control_plane.kubectl("apply", "--server-side", "-f", str(path))
    established(control_plane)
    control_plane.kubectl("create", "namespace", NAMESPACE)
    yield control_plane
    control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=true")


def create(plane: ControlPlane, obj: dict[str, Any]) -> tuple[int, str]:
    """POST like `kubectl create` does (strict field validation: an unknown field is a 400); (status, message)."""
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("uid", None)
    obj["metadata"].pop("generation", None)
    obj["metadata"]["namespace"] = NAMESPACE
    if obj["metadata"]["name"] == "relay":
        obj["metadata"]["name"] = next(_names)
    try:
        plane.request("POST", RELAYS.format(namespace=NAMESPACE), obj)
        return 201, ""
    except urllib.error.HTTPError as error:
        return error.code, str(json.loads(error.read()).get("message", ""))


def test_crds_are_accepted_and_established(api: ControlPlane) -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    served = api.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
    conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert served["status"]["acceptedNames"]["kind"] == "MailRelay"
    # A CRD whose schema is not structural, or whose CEL is over budget, is refused or marked here.
    assert conditions.get("NonStructuralSchema", "False") == "False"


def test_printer_columns_show_with_kubectl(api: ControlPlane) -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["served"]]
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    api.kubectl(
        "apply",
        "-n",
        NAMESPACE,
        "-f",
        "-",
        input=yaml.safe_dump(
            {**relay_object({"mailFromFQDN": "printed.example.com"}, name="printed", namespace=NAMESPACE, uid=None)}
        ),
    )
    wide = api.kubectl("get", "mailrelays", "-n", NAMESPACE, "printed", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", *columns], wide
    assert wide[1].split()[:2] == ["printed", "printed.example.com"], wide
    narrow = api.kubectl("get", "mailrelays", "-n", NAMESPACE, "printed").stdout.splitlines()[0].split()
    assert narrow == [
        "NAME",
        *[c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")],
    ]


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_applies(api: ControlPlane, path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    # An example goes into a namespace its reader already has; create the ones it names.
    for namespace in sorted({d["metadata"].get("namespace", "default") for d in documents} - {"default"}):
        if api.kubectl("get", "namespace", namespace, check=False).returncode:
            api.kubectl("create", "namespace", namespace)
    applied = api.kubectl("apply", "-f", str(path)).stdout
    assert len(applied.strip().splitlines()) == len(documents), applied
    api.kubectl("delete", "-f", str(path), "--wait=false")


@pytest.mark.parametrize("obj", GOOD, ids=lambda o: f"good-{GOOD.index(o)}")
def test_good_samples_are_accepted_by_both(api: ControlPlane, obj: dict[str, Any]) -> None:
    parse(obj)
    status, message = create(api, obj)
    assert status == 201, message


def test_there_are_at_least_30_invalid_relays() -> None:
    assert len(INVALID) >= 30


def _fields(problems: list[str]) -> list[str]:
    return [problem.split(":", 1)[0] for problem in problems]


def _named(message: str, field: str) -> bool:
    """The apiserver names the field, a field inside it, or an object holding it: the list, the map
    (spec.podLabels for spec.podLabels.mailrelay.dev/x) or the object whose CEL rule covers it
    (spec.allowedNetworks for spec.allowedNetworks[0], spec.relay for spec.relay.tls)."""
    names = {field}
    for cut in re.finditer(r"[.\[]", field):
        if field[: cut.start()].count(".") >= 1:
            names.add(field[: cut.start()])
    return any(f"{name}{after}" in message or f'"{name}' in message for name in names for after in ": [.")


def _case(case: Invalid) -> Any:
    if not case.by_crd:
        return pytest.param(case, id=case.id, marks=pytest.mark.xfail(strict=True, reason=case.gap))
    return pytest.param(case, id=case.id)


@pytest.mark.parametrize("case", [_case(r) for r in INVALID])
def test_invalid_relay_is_refused_by_the_apiserver_and_the_operator(api: ControlPlane, case: Invalid) -> None:
    problems: list[str] = []
    if case.by_operator:
        with pytest.raises(SpecError) as refused:
            parse(case.obj)
        problems = refused.value.problems
    status, message = create(api, case.obj)
    assert status in (400, 422), f"the apiserver stored ({status}) what the operator refuses: {problems}"
    fields = _fields(problems)
    assert not fields or any(_named(message, f) for f in fields), f"{message!r} names none of {fields}"
