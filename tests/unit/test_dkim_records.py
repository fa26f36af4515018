"""DKIM records split for DNS, and local mode's key Secret problems named (no API server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailrelay.api import dkim
from mailrelay.local.dkim import LocalDkimError, prepare, secrets_in

from support.samples import make_relay


def test_long_records_are_split_into_255_byte_strings() -> None:
    value = "v=DKIM1; k=rsa; p=" + "A" * 700
    parts = dkim.split(value)
    assert [len(p) for p in parts] == [255, 255, 208] and "".join(parts) == value
    record = dkim.Record("s._domainkey.example.com", value, "rsa-sha256")
    assert record.zone_value == " ".join(f'"{p}"' for p in parts)


def test_local_mode_names_a_missing_or_bad_key_secret(tmp_path: Path) -> None:
    relay = make_relay({"mailFromFQDN": "a.example.com", "dkim": {"keySecretRef": {"name": "k"}}})
    with pytest.raises(LocalDkimError, match="names Secret k: add it to the same YAML file"):
        prepare(relay, {}, tmp_path)
    bad = secrets_in(
        [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "stringData": {"rsa.private": "not a key"}}]
    )
    problem = "Secret k key rsa.private is not an unencrypted PEM private key"
    with pytest.raises(LocalDkimError, match=re.escape(problem)):
        prepare(relay, bad, tmp_path)
    assert not (tmp_path / "dkim-mail.txt").exists()
