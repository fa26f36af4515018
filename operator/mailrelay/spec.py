"""Parse and validate a MailRelay into one typed, immutable object.

The operator does not trust that the API server validated the object: older servers skip CEL
rules and objects can be edited directly in etcd. So the same rules as the CRD are enforced
here, every problem is collected (not only the first), and each names the field at fault.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from mailrelay import guard, posix_regex
from mailrelay.spec_pod import POD_FIELDS, PodSettings, parse_pod
from mailrelay.version import DEFAULT_POSTFIX_IMAGE

GROUP = "mailrelay.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MailRelay"
PLURAL = "mailrelays"

TlsLevel = Literal["None", "May", "Encrypt", "Wrapper"]
TLS_LEVELS: tuple[str, ...] = ("None", "May", "Encrypt", "Wrapper")
SMTPS_PORT = 465

DEFAULT_NETWORKS: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
DEFAULT_MESSAGE_SIZE_LIMIT = 10_240_000
MIN_MESSAGE_SIZE_LIMIT = 1024
MAX_MESSAGE_SIZE_LIMIT = 1_073_741_824
MAX_REPLICAS = 100
MAX_RULES = 50
MAX_NAME_LENGTH = 50  # leaves room for the "mailrelay-" prefix and pod suffixes in label values

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN_RE = HOSTNAME_RE
_BAD_CHARS = re.compile(r"[^\x21-\x7e]")  # anything but printable ASCII without the space


class SpecError(ValueError):
    """A MailRelay that cannot be rendered; `problems` holds one line per fault."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class RewriteRule:
    pattern: str
    replacement: str


@dataclass(frozen=True)
class Relay:
    host: str
    port: int = 587
    tls: TlsLevel = "Encrypt"
    auth_secret: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    name: str = "mail"
    port: int = 25


@dataclass(frozen=True)
class MailRelaySpec:
    mail_from_fqdn: str
    keep_domains: tuple[str, ...] = ()
    rules: tuple[RewriteRule, ...] = ()
    relay: Relay | None = None
    allowed_networks: tuple[str, ...] = DEFAULT_NETWORKS
    message_size_limit: int = DEFAULT_MESSAGE_SIZE_LIMIT
    replicas: int = 1
    image: str = DEFAULT_POSTFIX_IMAGE
    resources: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    node_selector: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    tolerations: tuple[dict[str, Any], ...] = ()
    service: ServiceSpec = ServiceSpec()
    pod: PodSettings = field(default_factory=PodSettings)  # pull secrets, scheduling, extra labels: spec_pod.py
    guard: guard.Guardrails = field(default_factory=guard.Guardrails)


@dataclass(frozen=True)
class MailRelay:
    """A MailRelay object: identity from metadata plus its validated spec."""

    name: str
    namespace: str
    spec: MailRelaySpec
    uid: str | None = None
    generation: int | None = None


class _Checker:
    """Collects problems while walking a spec; each check returns a clean value or None."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, path: str, value: Any, known: set[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be an object, got {_kind(value)}")
            return None
        for key in sorted(set(value) - known, key=str):
            self.fail(f"{path}.{key}", f"unknown field (known: {', '.join(sorted(known))})")
        return value

    def string(self, path: str, value: Any) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {_kind(value)}")
            return None
        return value

    def integer(self, path: str, value: Any, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, got {_kind(value)}")
            return None
        if not low <= value <= high:
            self.fail(path, f"must be from {low} to {high}, got {value}")
            return None
        return value

    def hostname(self, path: str, value: Any, *, need_dot: bool) -> str | None:
        text = self.string(path, value)
        if text is None:
            return None
        host = text.lower()
        if not host:
            self.fail(path, "must not be empty")
        elif len(host) > 253:
            self.fail(path, f"must be at most 253 characters, got {len(host)}")
        elif not HOSTNAME_RE.match(host):
            self.fail(path, f"{text!r} is not a valid host name (RFC 1123: letters, digits, '-' and '.')")
        elif need_dot and "." not in host:
            self.fail(path, f"{text!r} must be a fully qualified domain name with at least one dot")
        else:
            return host
        return None

    def string_list(self, path: str, value: Any, limit: int) -> list[str] | None:
        if not isinstance(value, list):
            self.fail(path, f"must be a list, got {_kind(value)}")
            return None
        if len(value) > limit:
            self.fail(path, f"must have at most {limit} entries, got {len(value)}")
            return None
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def parse(obj: dict[str, Any]) -> MailRelay:
    """Parse a whole MailRelay object (apiVersion, kind, metadata, spec) or raise SpecError."""
    check = _Checker()
    if not isinstance(obj, dict):
        raise SpecError([f"document: must be a MailRelay object, got {_kind(obj)}"])
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        check.fail("apiVersion/kind", f"must be {API_VERSION} {KIND}, got "
                   f"{obj.get('apiVersion')!r} {obj.get('kind')!r}")
    meta = obj.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not DNS1035_RE.match(name) or len(name) > MAX_NAME_LENGTH:
        check.fail("metadata.name", f"must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
                   f"(lower-case letters, digits, '-', starting with a letter), got {name!r}")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    spec = _parse_spec(check, obj.get("spec"))
    if check.problems or spec is None:
        raise SpecError(check.problems)
    generation = meta.get("generation")
    return MailRelay(name=str(name), namespace=str(namespace or "default"), spec=spec,
                     uid=meta.get("uid"), generation=generation if isinstance(generation, int) else None)


def parse_spec(spec: Any) -> MailRelaySpec:
    """Parse only the `spec` part; used where metadata comes from elsewhere (kopf handlers)."""
    check = _Checker()
    result = _parse_spec(check, spec)
    if check.problems or result is None:
        raise SpecError(check.problems)
    return result


_SPEC_FIELDS = {"mailFromFQDN", "rewrite", "relay", "allowedNetworks", "messageSizeLimitBytes",
                "replicas", "image", "resources", "nodeSelector", "tolerations", "service"} | POD_FIELDS | guard.FIELDS


def _parse_spec(check: _Checker, raw: Any) -> MailRelaySpec | None:
    spec = check.mapping("spec", raw, _SPEC_FIELDS)
    if spec is None:
        return None
    if "mailFromFQDN" not in spec:
        check.fail("spec.mailFromFQDN", "is required: the domain every relayed sender is rewritten to")
        fqdn = None
    else:
        fqdn = check.hostname("spec.mailFromFQDN", spec["mailFromFQDN"], need_dot=True)
    keep, rules = _parse_rewrite(check, spec.get("rewrite", {}))
    relay = _parse_relay(check, spec["relay"]) if spec.get("relay") is not None else None
    networks = _parse_networks(check, spec.get("allowedNetworks", list(DEFAULT_NETWORKS)))
    size = check.integer("spec.messageSizeLimitBytes", spec.get("messageSizeLimitBytes", DEFAULT_MESSAGE_SIZE_LIMIT),
                         MIN_MESSAGE_SIZE_LIMIT, MAX_MESSAGE_SIZE_LIMIT)
    replicas = check.integer("spec.replicas", spec.get("replicas", 1), 0, MAX_REPLICAS)
    image = check.string("spec.image", spec.get("image", DEFAULT_POSTFIX_IMAGE))
    if image is not None and (not image or _BAD_CHARS.search(image)):
        check.fail("spec.image", "must be a non-empty image reference of printable ASCII without spaces")
    resources = _parse_resources(check, spec.get("resources", {}))
    node_selector = _parse_node_selector(check, spec.get("nodeSelector", {}))
    tolerations = _parse_tolerations(check, spec.get("tolerations", []))
    service = _parse_service(check, spec.get("service", {}))
    pod = parse_pod(check, spec)
    guardrails = guard.parse(check, spec)
    if check.problems or pod is None:
        return None
    assert fqdn is not None and networks is not None and size is not None and replicas is not None
    assert image is not None and resources is not None and node_selector is not None
    assert tolerations is not None and service is not None and guardrails is not None
    return MailRelaySpec(mail_from_fqdn=fqdn, keep_domains=keep, rules=rules, relay=relay,
                         allowed_networks=networks, message_size_limit=size, replicas=replicas,
                         image=image, resources=resources, node_selector=node_selector,
                         tolerations=tolerations, service=service, pod=pod, guard=guardrails)


def _parse_rewrite(check: _Checker, raw: Any) -> tuple[tuple[str, ...], tuple[RewriteRule, ...]]:
    rewrite = check.mapping("spec.rewrite", raw, {"keepDomains", "rules"})
    if rewrite is None:
        return (), ()
    keep: list[str] = []
    domains = check.string_list("spec.rewrite.keepDomains", rewrite.get("keepDomains", []), 100) or []
    for i, item in enumerate(domains):
        host = check.hostname(f"spec.rewrite.keepDomains[{i}]", item, need_dot=False)
        if host is None:
            continue
        if host in keep:
            check.fail(f"spec.rewrite.keepDomains[{i}]", f"duplicate entry {host!r}")
        keep.append(host)
    rules: list[RewriteRule] = []
    raw_rules = check.string_list("spec.rewrite.rules", rewrite.get("rules", []), MAX_RULES) or []
    for i, item in enumerate(raw_rules):
        rule = _parse_rule(check, f"spec.rewrite.rules[{i}]", item)
        if rule is not None:
            rules.append(rule)
    return tuple(keep), tuple(rules)


# In a regexp-map result: $1 or ${1} inserts a group, $$ is a literal '$' (regexp_table(5)).
GROUP_REFERENCE = re.compile(r"\$(?:(\d+)|\{(\d+)\}|(\$))")


def _parse_rule(check: _Checker, path: str, raw: Any) -> RewriteRule | None:
    rule = check.mapping(path, raw, {"pattern", "replacement"})
    if rule is None:
        return None
    for key in ("pattern", "replacement"):
        if key not in rule:
            check.fail(f"{path}.{key}", "is required")
    pattern = check.string(f"{path}.pattern", rule.get("pattern", ""))
    replacement = check.string(f"{path}.replacement", rule.get("replacement", ""))
    if pattern is None or replacement is None or "pattern" not in rule or "replacement" not in rule:
        return None
    ok = True
    if not pattern:
        check.fail(f"{path}.pattern", "must not be empty")
        ok = False
    elif _BAD_CHARS.search(pattern):
        check.fail(f"{path}.pattern", "must be printable ASCII without spaces, newlines or control characters "
                   "(use [[:space:]] to match white space)")
        ok = False
    else:
        problem = posix_regex.map_pattern_problem(pattern)
        if problem:
            check.fail(f"{path}.pattern", problem)
            ok = False
    if not replacement:
        check.fail(f"{path}.replacement", "must not be empty")
        return None
    if _BAD_CHARS.search(replacement):
        check.fail(f"{path}.replacement", "must be printable ASCII without spaces, newlines or control characters")
        return None
    stripped = GROUP_REFERENCE.sub("", replacement)
    if "$" in stripped:
        check.fail(f"{path}.replacement", "a '$' must start a group reference ($1 or ${1}); write '$$' for '$'")
        return None
    if ok:
        groups = posix_regex.group_count(pattern)
        for match in GROUP_REFERENCE.finditer(replacement):
            number = match.group(1) or match.group(2)
            if number is not None and not 1 <= int(number) <= groups:
                check.fail(f"{path}.replacement", f"refers to group ${number} but the pattern has {groups}")
                return None
        return RewriteRule(pattern=pattern, replacement=replacement)
    return None


def _parse_relay(check: _Checker, raw: Any) -> Relay | None:
    relay = check.mapping("spec.relay", raw, {"host", "port", "tls", "authSecretRef"})
    if relay is None:
        return None
    if "host" not in relay:
        check.fail("spec.relay.host", "is required when relay is set")
        host = None
    else:
        host = _parse_relay_host(check, relay["host"])
    port = check.integer("spec.relay.port", relay.get("port", 587), 1, 65535)
    tls = relay.get("tls", "Encrypt")
    if tls not in TLS_LEVELS:
        check.fail("spec.relay.tls", f"must be one of {', '.join(TLS_LEVELS)}, got {tls!r}")
        tls = None
    elif tls == "Wrapper" and port is not None and port != SMTPS_PORT:
        check.fail("spec.relay.tls", f"Wrapper (SMTPS) needs port {SMTPS_PORT}, got port {port}")
        tls = None
    secret: str | None = None
    if relay.get("authSecretRef") is not None:
        ref = check.mapping("spec.relay.authSecretRef", relay["authSecretRef"], {"name"})
        if ref is not None:
            name = check.string("spec.relay.authSecretRef.name", ref.get("name"))
            if name is not None and (not DNS1123_SUBDOMAIN_RE.match(name) or len(name) > 253):
                check.fail("spec.relay.authSecretRef.name", f"{name!r} is not a valid Secret name")
            elif name is not None:
                secret = name
    if host is None or port is None or tls is None:
        return None
    return Relay(host=host, port=port, tls=tls, auth_secret=secret)


def _parse_relay_host(check: _Checker, value: Any) -> str | None:
    if isinstance(value, str):
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return check.hostname("spec.relay.host", value, need_dot=False)
        return str(address)
    return check.string("spec.relay.host", value)


def _parse_networks(check: _Checker, raw: Any) -> tuple[str, ...] | None:
    items = check.string_list("spec.allowedNetworks", raw, 100)
    if items is None:
        return None
    if not items:
        check.fail("spec.allowedNetworks", "must list at least one network; an empty list would let no pod relay")
        return None
    networks: list[str] = []
    for i, item in enumerate(items):
        path = f"spec.allowedNetworks[{i}]"
        text = check.string(path, item)
        if text is None:
            continue
        if "/" not in text:
            check.fail(path, f"{text!r} needs a prefix length, e.g. 10.0.0.0/8 or {text}/32")
            continue
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            check.fail(path, f"{text!r} is not a CIDR network ({exc})")
            continue
        if network.prefixlen == 0:
            check.fail(path, f"{text!r} matches every address and would make an open relay")
            continue
        if str(network) in networks:
            check.fail(path, f"duplicate network {str(network)!r}")
            continue
        networks.append(str(network))
    return tuple(networks) if len(networks) == len(items) else None


_QUANTITY_RE = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]i?|Ki)?$")


def _parse_resources(check: _Checker, raw: Any) -> dict[str, Any] | None:
    resources = check.mapping("spec.resources", raw, {"limits", "requests"})
    if resources is None:
        return None
    clean: dict[str, Any] = {}
    for part in ("limits", "requests"):
        values = resources.get(part)
        if values is None:
            continue
        if not isinstance(values, dict):
            check.fail(f"spec.resources.{part}", f"must be an object of quantities, got {_kind(values)}")
            continue
        for key, quantity in values.items():
            if isinstance(quantity, bool) or not isinstance(quantity, str | int) or not _QUANTITY_RE.match(
                    str(quantity)):
                check.fail(f"spec.resources.{part}.{key}", f"{quantity!r} is not a Kubernetes quantity")
        clean[part] = {str(k): str(v) for k, v in values.items()}
    return clean


def _parse_node_selector(check: _Checker, raw: Any) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        check.fail("spec.nodeSelector", f"must be an object of strings, got {_kind(raw)}")
        return None
    for key, value in raw.items():
        if not isinstance(value, str):
            check.fail(f"spec.nodeSelector.{key}", f"must be a string, got {_kind(value)}")
    return {str(k): str(v) for k, v in raw.items()}


_TOLERATION_FIELDS = {"key", "operator", "value", "effect", "tolerationSeconds"}


def _parse_tolerations(check: _Checker, raw: Any) -> tuple[dict[str, Any], ...] | None:
    items = check.string_list("spec.tolerations", raw, 50)
    if items is None:
        return None
    result = []
    for i, item in enumerate(items):
        toleration = check.mapping(f"spec.tolerations[{i}]", item, _TOLERATION_FIELDS)
        if toleration is None:
            continue
        if toleration.get("operator", "Equal") not in ("Equal", "Exists"):
            check.fail(f"spec.tolerations[{i}].operator", "must be Equal or Exists")
        if toleration.get("effect", "NoSchedule") not in ("NoSchedule", "PreferNoSchedule", "NoExecute", ""):
            check.fail(f"spec.tolerations[{i}].effect", "must be NoSchedule, PreferNoSchedule or NoExecute")
        result.append(dict(toleration))
    return tuple(result)


def _parse_service(check: _Checker, raw: Any) -> ServiceSpec | None:
    service = check.mapping("spec.service", raw, {"name", "port"})
    if service is None:
        return None
    name = check.string("spec.service.name", service.get("name", "mail"))
    if name is not None and not DNS1035_RE.match(name):
        check.fail("spec.service.name", f"{name!r} is not a DNS-1035 label (lower-case letters, digits, '-', "
                   "starting with a letter, at most 63 characters)")
        name = None
    port = check.integer("spec.service.port", service.get("port", 25), 1, 65535)
    if name is None or port is None:
        return None
    return ServiceSpec(name=name, port=port)
