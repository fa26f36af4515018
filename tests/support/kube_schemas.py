"""The upstream Kubernetes schemas (kubernetes-validate) of every version we support, strict.

kubernetes-validate parses a version's JSON schema files again on every call, which was most of the
unit tier's time; here each file is parsed once per process. The validation itself is the library's.
"""

from __future__ import annotations

import functools
from typing import Any

import kubernetes_validate.utils as kv
from kubernetes_validate.utils import ValidationError, latest_version

kv.schema_contents = functools.cache(kv.schema_contents)  # validate() looks it up at each call

K8S_VERSIONS = sorted(
    {v for v in kv.all_versions() if tuple(map(int, v.split(".")[:2])) >= (1, 29)},
    key=lambda v: tuple(map(int, v.split("."))),
)
OLDEST, NEWEST = K8S_VERSIONS[0], latest_version()

__all__ = ["K8S_VERSIONS", "NEWEST", "OLDEST", "ValidationError", "latest_version", "validate"]


def validate(doc: dict[str, Any], version: str) -> None:
    """Raise ValidationError unless `doc` is valid, with no unknown field, for that Kubernetes version."""
    kv.validate(doc, version, strict=True)
