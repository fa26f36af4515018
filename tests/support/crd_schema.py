"""Check objects against the CRD the way an API server would: defaults, OpenAPI schema, then CEL rules.

jsonschema does the OpenAPI part and cel-python runs every `x-kubernetes-validations` rule with
`self` bound to the (defaulted) value, as the API server does after defaulting. Both match regular
expressions with RE2, the API server's engine: Python's `re` would let `$` match before a trailing
newline, and a test would then accept a host name the API server refuses.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema
import re2

_CEL = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural-schema defaulting: fill absent properties that declare a default, recursively."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in schema.get("properties", {}):
                    value[key] = apply_defaults(extra, value[key])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    if isinstance(instance, str) and not re2.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _re2_pattern})


def schema_errors(schema: dict[str, Any], value: Any) -> list[str]:
    validator = _Validator(schema)
    return sorted(
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(value)
    )


def cel_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = _PROGRAMS.get(rule["rule"])
        if program is None:
            program = _PROGRAMS[rule["rule"]] = _CEL.program(_CEL.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if isinstance(result, Exception) or not bool(result):
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += cel_errors(sub, value[key], f"{path}.{key}" if path else key)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def check(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """Every problem the API server would report for `obj` (empty when it would be admitted)."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    value = apply_defaults(schema, copy.deepcopy(obj))
    errors = schema_errors(schema, value)
    if errors:  # like the API server, CEL only runs on schema-valid objects
        return errors
    return cel_errors(schema, value)
