"""Rendering: the manifests, checked against the upstream Kubernetes schemas, and the files."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailrelay.api.rules import RewriteRule
from mailrelay.api.spec import Relay, SpecError, parse
from mailrelay.manifests import load_relays
from mailrelay.render import postfix
from mailrelay.render.relay import CONFIG_HASH_ANNOTATION, config_hash, render_relay

from support.kube_schemas import K8S_VERSIONS, NEWEST, ValidationError, validate
from support.paths import ROOT
from support.samples import FULL, by_kind, make_relay, pod_template


def sample_relays() -> list[Any]:
    relays = [
        make_relay(FULL),
        make_relay({"mailFromFQDN": "a.example"}),
        make_relay({**FULL, "queue": {"storage": {"size": "1Gi", "storageClassName": "fast"}}}),
    ]
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "MailRelay"]
        relays += [parse(d) for d in docs]
    return relays


def test_versions_cover_1_29_to_the_newest_known() -> None:
    assert K8S_VERSIONS[0].startswith("1.29") and K8S_VERSIONS[-1] == NEWEST


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_kubernetes_schemas(version: str) -> None:
    for relay in sample_relays():
        for manifest in render_relay(relay, secret_version="abc").objects:
            validate(manifest, version)


def test_kubernetes_validate_catches_a_broken_manifest() -> None:
    deployment = by_kind(render_relay(make_relay(FULL)).objects)["Deployment"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(ValidationError):
        validate(deployment, K8S_VERSIONS[-1])


def test_children_are_owned_labelled_and_wired_together() -> None:
    relay = make_relay(FULL)
    policy, config_map, deployment, budget, service = render_relay(relay).objects
    for obj in (policy, config_map, deployment, budget, service):
        [owner] = obj["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "mailrelay.dev/v1alpha1",
            "kind": "MailRelay",
            "name": "relay",
            "uid": relay.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert obj["metadata"]["namespace"] == "apps"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mailrelay-operator"
    assert service["metadata"]["name"] == "smtp"
    assert service["spec"]["ports"] == [{"name": "smtp", "port": 587, "targetPort": "smtp", "protocol": "TCP"}]
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert set(service["spec"]["selector"].items()) <= set(pod["metadata"]["labels"].items())
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]
    container, metrics = pod["spec"]["containers"]
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == container["name"]
    assert metrics["image"] == container["image"]
    assert {"name": "MAIL_FROM_FQDN", "value": "apps.example.com"} in container["env"]
    assert container["livenessProbe"]["exec"]["command"][-1] == "live"
    assert container["readinessProbe"]["exec"]["command"][-1] == "ready"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["/usr/local/bin/mailrelay-drain"]
    assert {"name": "relay-auth", "secret": {"secretName": "smarthost", "defaultMode": 0o400}} in pod["spec"]["volumes"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["spec"]["tolerations"] == FULL["tolerations"]
    # No secret material anywhere in what is rendered.
    assert "password" not in str(render_relay(relay).objects).lower().replace("smtp_sasl_password_maps", "")


def test_the_pod_carries_every_pod_knob() -> None:
    relay = make_relay(FULL)
    deployment = by_kind(render_relay(relay).objects)["Deployment"]
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["imagePullSecrets"] == FULL["imagePullSecrets"]
    assert pod["affinity"] == FULL["affinity"]
    assert pod["priorityClassName"] == "mail-critical"
    zone, host = pod["topologySpreadConstraints"]
    # Without a labelSelector a constraint counts this relay's pods (the Deployment's own selector).
    assert zone == {**FULL["topologySpreadConstraints"][0], "labelSelector": deployment["spec"]["selector"]}
    assert host == FULL["topologySpreadConstraints"][1]
    assert FULL["podLabels"].items() <= template["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    annotations = template["metadata"]["annotations"]
    assert FULL["podAnnotations"].items() <= annotations.items() and CONFIG_HASH_ANNOTATION in annotations


def test_a_relay_without_pod_knobs_renders_none_of_them() -> None:
    pod = by_kind(render_relay(make_relay({"mailFromFQDN": "a.example"})).objects)["Deployment"]["spec"]["template"][
        "spec"
    ]
    assert not {"imagePullSecrets", "affinity", "priorityClassName"} & set(pod)


def test_rendering_without_uid_has_no_owner_reference() -> None:
    relay = make_relay({"mailFromFQDN": "a.example"}, uid=None)
    assert all("ownerReferences" not in obj["metadata"] for obj in render_relay(relay).objects)


def test_rendering_is_deterministic() -> None:
    assert render_relay(make_relay(FULL), "v1").objects == render_relay(make_relay(FULL), "v1").objects


def test_main_cf_has_the_relay_settings() -> None:
    main = postfix.main_cf(make_relay(FULL).spec)
    params = dict(
        (line.partition(" = ")[0], line.partition(" = ")[2]) if " = " in line else (line.rstrip(" ="), "")
        for line in main.splitlines()
        if not line.startswith("#")
    )
    assert params["relayhost"] == "[smtp.example.net]:465"
    assert params["smtp_tls_security_level"] == "encrypt"
    assert params["smtp_tls_wrappermode"] == "yes"
    assert params["smtp_sasl_password_maps"] == "texthash:${config_directory}/sasl_passwd"
    assert params["mynetworks"] == "127.0.0.1/32 [::1]/128 10.42.0.0/16 [fd00:10::]/64"
    assert params["sender_canonical_maps"] == "regexp:${config_directory}/sender_canonical"
    assert params["local_header_rewrite_clients"] == "permit_mynetworks"
    assert params["message_size_limit"] == "5000000"
    assert params["mydestination"] == ""


@pytest.mark.parametrize(
    ("tls", "port", "level", "wrapper"),
    [
        ("None", 25, "none", "no"),
        ("May", 587, "may", "no"),
        ("Encrypt", 587, "encrypt", "no"),
        ("Wrapper", 465, "encrypt", "yes"),
    ],
)
def test_tls_levels_map_to_postfix(tls: str, port: int, level: str, wrapper: str) -> None:
    main = postfix.main_cf(
        make_relay({"mailFromFQDN": "a.example", "relay": {"host": "h.example", "port": port, "tls": tls}}).spec
    )
    assert f"smtp_tls_security_level = {level}\n" in main
    assert f"smtp_tls_wrappermode = {wrapper}\n" in main


def test_sender_maps_rules_then_kept_domains_then_the_fqdn() -> None:
    spec = make_relay(FULL).spec
    rules = [ln for ln in postfix.sender_canonical(spec).splitlines() if not ln.startswith("#")]
    assert rules == ['if !/^""$/', "if !/^.{255}/", "/^([^@]+)@db-[0-9]+$/ db-$1@apps.example.com", "endif", "endif"]
    domains = [ln for ln in postfix.sender_domains(spec).splitlines() if not ln.startswith("#")]
    assert domains == [
        r"/^(.*@(.+\.)?apps\.example\.com)$/ ${1}",
        r"/^(.*@(.+\.)?corp\.example\.org)$/ ${1}",
        "/^(.*)@[^@]*$/ ${1}@apps.example.com",
        'if !/^""$/',
        "/^([^@]+)$/ ${1}@apps.example.com",
        "endif",
    ]
    params = dict(ln.split(" = ", 1) for ln in postfix.main_cf(spec).splitlines() if " = " in ln)
    # canonical_maps runs after sender_canonical_maps: the domains map has the last word.
    assert params["canonical_maps"] == "regexp:${config_directory}/sender_domains"
    assert params["canonical_classes"] == params["sender_canonical_classes"] == "envelope_sender, header_sender"


def test_each_top_level_branch_is_anchored_without_adding_a_group() -> None:
    spec = make_relay(
        {
            "mailFromFQDN": "a.example",
            "rewrite": {"rules": [{"pattern": r"(a)@x|b@(y|z)", "replacement": "$1@a.example"}]},
        }
    ).spec
    assert postfix.sender_canonical(spec).splitlines()[-3] == r"/^(a)@x$|^b@(y|z)$/ $1@a.example"


def _params(main: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in main.splitlines() if " = " in line and not line.startswith("#"))


def test_limits_apply_to_every_client_but_loopback() -> None:
    params = _params(
        postfix.main_cf(
            make_relay(
                {
                    "mailFromFQDN": "a.example",
                    "limits": {"messagesPerMinute": 7, "recipientsPerMinute": 0, "concurrentConnections": 3},
                }
            ).spec
        )
    )
    assert params["anvil_rate_time_unit"] == "60s"
    assert params["smtpd_client_event_limit_exceptions"] == "127.0.0.1/32 [::1]/128"
    assert (
        params["smtpd_client_message_rate_limit"],
        params["smtpd_client_recipient_rate_limit"],
        params["smtpd_client_connection_count_limit"],
    ) == ("7", "0", "3")


def test_allow_list_comes_before_permit_mynetworks() -> None:
    spec = make_relay({"mailFromFQDN": "a.example", "recipients": {"allowDomains": ["Example.org", "x-y.net"]}}).spec
    params = _params(postfix.main_cf(spec))
    assert params["smtpd_recipient_restrictions"] == (
        "check_recipient_access regexp:${config_directory}/recipient_access, permit_mynetworks, reject"
    )
    lines = [ln for ln in postfix.recipient_access(spec).splitlines() if not ln.startswith("#")]
    assert lines == [
        f"/^recipient-syntax@mailrelay\\.invalid$/ {postfix.UNPLAIN_REFUSAL}",
        r"/@([^@]+\.)?example\.org$/ DUNNO",
        r"/@([^@]+\.)?x-y\.net$/ DUNNO",
        f"/./ {postfix.RECIPIENT_REFUSAL}",
    ]
    without = make_relay({"mailFromFQDN": "a.example"}).spec
    assert postfix.RECIPIENT_ACCESS not in postfix.config_files(without)
    assert postfix.COMMAND_FILTER not in postfix.config_files(without)
    assert params["smtpd_command_filter"] == "regexp:${config_directory}/command_filter"
    assert "smtpd_command_filter" not in _params(postfix.main_cf(without))
    assert _params(postfix.main_cf(without))["smtpd_recipient_restrictions"] == "permit_mynetworks, reject"


def test_dkim_adds_one_opendkim_milter_per_key_and_fails_closed() -> None:
    def config(relay: Any) -> dict[str, str]:
        return dict(next(o for o in render_relay(relay).objects if o["kind"] == "ConfigMap")["data"])

    plain = config(make_relay(FULL))
    assert "milter" not in plain["main.cf"] and not [f for f in plain if f.startswith("opendkim")]
    data = config(make_relay({**FULL, "dkim": {"domain": "example.com", "keyType": "Ed25519"}}))
    main_cf = dict(line.split(" = ", 1) for line in data["main.cf"].splitlines() if " = " in line)
    sockets = "unix:${mailrelay_opendkim_dir}/ed25519.sock, unix:${mailrelay_opendkim_dir}/rsa.sock"
    assert main_cf["smtpd_milters"] == main_cf["non_smtpd_milters"] == sockets
    assert main_cf["milter_default_action"] == "tempfail"  # never unsigned, never lost: the client retries
    assert sorted(f for f in data if f.startswith("opendkim")) == sorted(
        ["opendkim-kept-headers.lua"]
        + [f"opendkim-{a}.{kind}" for a in ("ed25519", "rsa") for kind in ("conf", "keytable", "signingtable")]
    )
    assert "SignatureAlgorithm ed25519-sha256" in data["opendkim-ed25519.conf"]
    assert "SignatureAlgorithm rsa-sha256" in data["opendkim-rsa.conf"]
    assert data["opendkim-rsa.keytable"].splitlines()[1] == "rsa example.com:mail:@OPENDKIM_DIR@/keys/rsa.private"
    assert data["opendkim-ed25519.signingtable"].splitlines()[1:] == [
        "*@example.com ed25519",
        "*@*.example.com ed25519",
    ]


def test_direct_delivery_without_relay() -> None:
    main = postfix.main_cf(make_relay({"mailFromFQDN": "a.example"}).spec)
    assert "relayhost =\n" in main and "smtp_sasl" not in main


def _hash(spec: dict[str, Any], secret_version: str = "") -> str:
    return config_hash(make_relay(spec), secret_version)


@pytest.mark.parametrize(
    "change",
    [
        {"mailFromFQDN": "other.example.com"},
        {"rewrite": {"keepDomains": ["corp.example.org", "x.example"], "rules": FULL["rewrite"]["rules"]}},
        {"rewrite": {"keepDomains": ["corp.example.org"], "rules": []}},
        {"allowedNetworks": ["10.42.0.0/16"]},
        {"relay": {**FULL["relay"], "authSecretRef": {"name": "other"}}},
        {"relay": {**FULL["relay"], "host": "smtp2.example.net"}},
        {"messageSizeLimitBytes": 6_000_000},
        {"dkim": {}},
        {"dkim": {"domain": "example.com"}},
        {"dkim": {"keyType": "Ed25519"}},
        {"limits": {"messagesPerMinute": 10}},
        {"recipients": {"allowDomains": ["example.org"]}},
    ],
)
def test_config_hash_changes_when_something_that_matters_changes(change: dict[str, Any]) -> None:
    assert _hash({**FULL, **change}) != _hash(FULL)


@pytest.mark.parametrize(
    "change",
    [
        {"replicas": 5},
        {"resources": {}},
        {"nodeSelector": {}},
        {"tolerations": []},
        {"service": {"name": "mail"}},
        {"image": "registry.local/postfix:2"},
        {"affinity": {}},
        {"topologySpreadConstraints": []},
        {"podLabels": {}},
        {"podAnnotations": {"a": "b"}},
        {"priorityClassName": "other"},
        {"imagePullSecrets": []},
        {"image": "registry.local/postfix:2"},
        {"networkPolicy": {"enabled": False}},
        {"clients": [{"namespaceSelector": {}}]},
        {"egress": {"restricted": True}},
    ],
)
def test_config_hash_ignores_what_does_not_need_a_restart(change: dict[str, Any]) -> None:
    assert _hash({**FULL, **change}) == _hash(FULL)


def test_config_hash_follows_the_secret_content_and_lands_on_the_pod() -> None:
    assert _hash(FULL, "v1") != _hash(FULL, "v2")
    deployment = by_kind(render_relay(make_relay(FULL), "v1").objects)["Deployment"]
    assert deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == _hash(FULL, "v1")


# Property: no string a user can put in a spec adds a line to main.cf or a map. Either the spec is
# refused, or every file has exactly as many lines as its structure dictates. Each field is fuzzed
# in turn, the others valid, with a mix of valid and hostile values so both branches are exercised.
_hostile = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["a.example\nrelayhost = evil", "x/ y\n/z", "a\rb", "a\x00b", "$(reboot)", "a.example ", "\u2028", "a\\/b\n"]
)
_host = st.from_regex(r"\A[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){1,3}\Z")
_FIELDS: dict[str, tuple[Any, Any]] = {
    "fqdn": (lambda s, v: s.update(mailFromFQDN=v), _host),
    "keep": (lambda s, v: s["rewrite"].update(keepDomains=[v]), _host),
    "pattern": (
        lambda s, v: s["rewrite"]["rules"][0].update(pattern=v),
        st.from_regex(r"\A[a-z(). *+\\/|\[\]^$-]{1,12}\Z"),
    ),
    "replacement": (
        lambda s, v: s["rewrite"]["rules"][0].update(replacement=v),
        st.from_regex(r"\A[a-z$@.{}1-]{1,12}\Z"),
    ),
    "host": (lambda s, v: s["relay"].update(host=v), _host),
    "network": (lambda s, v: s.update(allowedNetworks=[v]), st.ip_addresses().map(lambda a: f"{a}/{a.max_prefixlen}")),
    "secret": (lambda s, v: s["relay"]["authSecretRef"].update(name=v), _host),
    "image": (lambda s, v: s.update(image=v), st.from_regex(r"\A[a-z0-9./:@-]{1,30}\Z")),
    "allowDomain": (lambda s, v: s["recipients"].update(allowDomains=[v]), _host),
}


def _baseline() -> dict[str, Any]:
    return {
        "mailFromFQDN": "a.example",
        "rewrite": {"keepDomains": ["b.example"], "rules": [{"pattern": "(x)", "replacement": "y@a.example"}]},
        "relay": {"host": "h.example", "authSecretRef": {"name": "s"}},
        "allowedNetworks": ["10.0.0.0/8"],
        "recipients": {"allowDomains": ["c.example"]},
    }


_BASELINE_FILES = postfix.config_files(make_relay(_baseline()).spec)
_seen_valid: dict[str, int] = {}


@pytest.mark.parametrize("field", sorted(_FIELDS))
def test_no_string_field_can_add_a_line(field: str) -> None:
    setter, valid = _FIELDS[field]

    @settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(value=valid | _hostile)
    def check(value: str) -> None:
        spec = _baseline()
        setter(spec, value)
        try:
            relay = make_relay(spec)
        except SpecError:
            return
        _seen_valid[field] = _seen_valid.get(field, 0) + 1
        for name, text in postfix.config_files(relay.spec).items():
            assert len(text.splitlines()) == len(_BASELINE_FILES[name].splitlines()), (name, value)
            assert not any(ch in text for ch in "\r\x00\x0b\x0c\x85\u2028\u2029"), (name, value)

    check()
    assert _seen_valid.get(field, 0) > 10, f"too few valid {field} values were generated to mean anything"


def test_cli_render_prints_the_manifests_and_validate_rejects_bad_input(tmp_path: Any, capsys: Any) -> None:
    from mailrelay.cli import main

    assert main(["render", "-f", str(ROOT / "examples" / "mailrelay.yaml")]) == 0
    out = capsys.readouterr().out
    assert [d["kind"] for d in yaml.safe_load_all(out)] == ["NetworkPolicy", "ConfigMap", "Deployment", "Service"]
    assert "main.cf: |" in out  # files stay readable in the YAML
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: mailrelay.dev/v1alpha1\nkind: MailRelay\nmetadata: {name: r}\n"
        "spec: {mailFromFQDN: nodot, replicas: -1}\n"
    )
    for command in ("render", "validate"):
        with pytest.raises(SystemExit) as exited:
            main([command, "-f", str(bad)])
        assert exited.value.code == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.splitlines() == [
            f"{bad}: r: spec.mailFromFQDN: 'nodot' must be a fully qualified domain name with at least one dot",
            f"{bad}: r: spec.replicas: must be from 0 to 100, got -1",
        ]


def test_cli_validate_names_each_bad_guardrail(tmp_path: Any, capsys: Any) -> None:
    from mailrelay.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("""apiVersion: mailrelay.dev/v1alpha1
kind: MailRelay
metadata: {name: r}
spec:
  mailFromFQDN: a.example
  networkPolicy: {enabled: false}
  egress: {restricted: true}
  clients: [{}, {namespaceSelector: {matchExpressions: [{key: tier, operator: In}]}}]
  limits: {messagesPerMinute: -5}
  recipients: {allowDomains: ["ops@example.org"]}
""")
    with pytest.raises(SystemExit) as exited:
        main(["validate", "-f", str(bad)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{bad}: r: {line}"
        for line in [
            "spec.clients[0]: needs a namespaceSelector, a podSelector or both",
            "spec.clients[1].namespaceSelector.matchExpressions[0].values: must not be empty for operator In",
            "spec.limits.messagesPerMinute: must be from 0 to 1000000, got -5",
            "spec.recipients.allowDomains[0]: 'ops@example.org' is not a valid host name (RFC 1123: letters, digits, "
            "'-' and '.')",
            "spec.egress.restricted: needs spec.networkPolicy.enabled: the egress rules live in the relay's "
            "NetworkPolicy",
        ]
    ]


def test_load_relays_reads_every_document() -> None:
    relays = load_relays(str(ROOT / "examples" / "mailrelay.yaml"))
    assert [r.name for r in relays] == ["relay"]


@pytest.mark.parametrize(
    "changes",
    [
        {"mail_from_fqdn": "a.example\nalways_bcc = spy@collector.test"},
        {"relay": Relay(host="::1%lo\nsmtpd_authorized_xclient_hosts = static:all")},
        {"keep_domains": ("corp.example\r/^/ x@y",)},
        {"rules": (RewriteRule("a", "b@c.example\n/^/ spy@collector.test"),)},
        {"image": "ok", "mail_from_fqdn": "a.example\x00"},
    ],
    ids=["fqdn", "relay host", "keep domain", "rule", "nul"],
)
def test_rendering_refuses_a_line_break_that_validation_missed(changes: dict[str, Any]) -> None:
    """Defence in depth: a spec built around `parse` still cannot inject a Postfix line."""
    spec = dataclasses.replace(make_relay({"mailFromFQDN": "a.example"}).spec, **changes)
    with pytest.raises(postfix.UnsafeValue, match="refusing to render a Postfix line"):
        postfix.config_files(spec)


def test_the_metrics_sidecar_shares_the_queue_read_only_and_the_log_file() -> None:
    """The exporter reads the showq socket in the relay's queue volume and follows the file Postfix logs to."""
    pod = pod_template(make_relay({"mailFromFQDN": "a.example"}))["spec"]
    postfix_container, metrics = pod["containers"]
    env = {e["name"]: e["value"] for e in postfix_container["env"]}
    metrics_env = {e["name"]: e["value"] for e in metrics["env"]}
    assert env["MAILRELAY_MAILLOG"] == metrics_env["MAILRELAY_MAILLOG"]
    relay_mounts = {m["name"]: m for m in postfix_container["volumeMounts"]}
    for mount in metrics["volumeMounts"]:
        assert mount["readOnly"] is True
        assert mount["mountPath"] == relay_mounts[mount["name"]]["mountPath"]
    assert metrics_env["MAILRELAY_MAILLOG"].startswith(relay_mounts["log"]["mountPath"] + "/")
    assert metrics_env["POSTFIX_QUEUE_DIR"] == relay_mounts["queue"]["mountPath"]
    [port] = metrics["ports"]
    assert metrics_env["MAILRELAY_METRICS_LISTEN"] == f":{port['containerPort']}"
    assert metrics["livenessProbe"]["httpGet"]["port"] == port["name"]
    assert metrics["securityContext"]["readOnlyRootFilesystem"] is True
    assert metrics["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["DAC_OVERRIDE"]}


def test_the_relay_container_has_a_cpu_limit_unless_resources_say_otherwise() -> None:
    """A backstop for whatever rules and clients make cleanup do (docs/security.md, CPU)."""

    def resources(spec: dict[str, Any]) -> dict[str, Any]:
        [container] = [c for c in pod_template(make_relay(spec))["spec"]["containers"] if c["name"] == "postfix"]
        return dict(container["resources"])

    assert resources({"mailFromFQDN": "a.example"}) == {
        "requests": {"cpu": "10m", "memory": "32Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    chosen = {"requests": {"cpu": "2"}, "limits": {"cpu": "4", "memory": "1Gi"}}
    assert resources({"mailFromFQDN": "a.example", "resources": chosen}) == chosen  # replaces all four
