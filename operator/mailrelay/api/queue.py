"""spec.queue: where Postfix's queue lives, an emptyDir (the default) or a claim per pod.

With `storage`, the relay runs as a StatefulSet whose volumeClaimTemplates carry these values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailrelay.api import grammar
from mailrelay.api.checker import Checker, quote


@dataclass(frozen=True)
class QueueStorage:
    """A PersistentVolumeClaim per pod for Postfix's queue (spec.queue.storage)."""

    size: str
    storage_class: str | None = None


# spec.queue: where Postfix's queue lives. Bounds match the CRD.
MAX_QUEUE_SIZE_LENGTH = 32
QUEUE_SIZE = r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?"  # a whole PVC size, also the CRD's pattern
_QUEUE_SIZE_RE = re.compile(QUEUE_SIZE)


def parse_queue(check: Checker, raw: Any) -> QueueStorage | None:
    queue = check.mapping("spec.queue", raw, {"storage"})
    if queue is None or queue.get("storage") is None:
        return None
    storage = check.mapping("spec.queue.storage", queue["storage"], {"size", "storageClassName"})
    if storage is None:
        return None
    size = None
    if "size" not in storage:
        check.fail("spec.queue.storage.size", "is required, e.g. 1Gi")
    else:
        size = check.string("spec.queue.storage.size", storage["size"])
    if size is not None:
        if len(size) > MAX_QUEUE_SIZE_LENGTH or not _QUEUE_SIZE_RE.fullmatch(size):
            check.fail("spec.queue.storage.size", f"{quote(size)} is not a storage quantity such as 512Mi or 2Gi")
            size = None
        elif _quantity_bytes(size) == 0:
            check.fail("spec.queue.storage.size", "must be more than zero")
            size = None
    storage_class = None
    if storage.get("storageClassName") is not None:
        storage_class = check.string("spec.queue.storage.storageClassName", storage["storageClassName"])
        if storage_class is not None and (
            len(storage_class) > 253 or not grammar.full(grammar.HOSTNAME, storage_class)
        ):
            check.fail(
                "spec.queue.storage.storageClassName", f"{quote(storage_class)} is not a valid StorageClass name"
            )
            storage_class = None
    if size is None or (storage.get("storageClassName") is not None and storage_class is None):
        return None
    return QueueStorage(size=size, storage_class=storage_class)


def _quantity_bytes(size: str) -> float:
    number = re.match(r"^[0-9.]+", size)
    assert number is not None
    suffix = size[number.end() :]
    factor = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}.get(suffix)
    if factor is None:
        factor = 1024 ** ("KMGTP".index(suffix[0]) + 1)
    return float(number.group()) * factor
