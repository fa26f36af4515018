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

from publicsuffixlist import PublicSuffixList

from mailrelay.api import grammar, guardrails
from mailrelay.api.checker import Checker, kind, quote
from mailrelay.api.dkim import DkimSpec, parse_dkim
from mailrelay.api.names import API_VERSION, KIND, SMARTHOST_KIND
from mailrelay.api.oauth2 import AUTH_TYPES, OAuth2, parse_oauth2
from mailrelay.api.pod import POD_FIELDS, PodSettings, parse_pod
from mailrelay.api.queue import QueueStorage, parse_queue
from mailrelay.api.rules import RewriteRule, parse_rule
from mailrelay.api.scheduling import parse_node_selector, parse_resources, parse_tolerations
from mailrelay.version import RELEASED_POSTFIX_IMAGE

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
MAX_SMARTHOST_NAME = 40  # its egress tier is the relay "smarthost-<name>", within MAX_NAME_LENGTH

DNS1035_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
DNS1123_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PUBLIC_SUFFIXES = PublicSuffixList()  # the bundled Public Suffix List snapshot; nothing is downloaded
# Networks that are not public address space; anything else must be a /16 (IPv4) or /32 (IPv6) or
# smaller, so no list of allowedNetworks (at most 100) covers a meaningful part of the Internet.
NON_PUBLIC_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)
MIN_PUBLIC_PREFIX = {4: 16, 6: 32}
# IPv4-mapped, IPv4-compatible and NAT64 (64:ff9b::/96) addresses all live in ::/8: a network there
# could stand for the whole IPv4 Internet.
IPV4_IN_IPV6 = ipaddress.ip_network("::/8")


def is_public_suffix(domain: str) -> bool:
    """A domain nobody can own (com, co.uk, github.io), by the bundled Public Suffix List."""
    return bool(_PUBLIC_SUFFIXES.is_public(domain))


class SpecError(ValueError):
    """A MailRelay that cannot be rendered; `problems` holds one line per fault."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Relay:
    host: str
    port: int = 587
    tls: TlsLevel = "Encrypt"
    auth_secret: str | None = None  # authType Password: the Secret with username and password
    oauth2: OAuth2 | None = None  # authType OAuth2: api/oauth2.py
    # Never parsed: a relay that names a ClusterSmarthost sends to its egress tier, whose TLS
    # certificate it pins by this SHA-256 fingerprint (controller.tenancy fills it in).
    pin: str = ""


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
    smarthost: str | None = None  # spec.smarthostRef: a ClusterSmarthost instead of relay (api/smarthost.py)
    allowed_networks: tuple[str, ...] = DEFAULT_NETWORKS
    message_size_limit: int = DEFAULT_MESSAGE_SIZE_LIMIT
    replicas: int = 1
    image: str = RELEASED_POSTFIX_IMAGE
    resources: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    node_selector: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    tolerations: tuple[dict[str, Any], ...] = ()
    service: ServiceSpec = ServiceSpec()
    dkim: DkimSpec | None = None
    pod: PodSettings = field(default_factory=PodSettings)  # pull secrets, scheduling, extra labels: api/pod.py
    queue_storage: QueueStorage | None = None
    guardrails: guardrails.Guardrails = field(default_factory=guardrails.Guardrails)


@dataclass(frozen=True)
class MailRelay:
    """A MailRelay object: identity from metadata plus its validated spec."""

    name: str
    namespace: str
    spec: MailRelaySpec
    uid: str | None = None
    generation: int | None = None


def parse(obj: dict[str, Any], default_image: str = RELEASED_POSTFIX_IMAGE) -> MailRelay:
    """Parse a whole MailRelay object (apiVersion, kind, metadata, spec) or raise SpecError.

    `default_image` is the Postfix image for a relay without spec.image (Settings.postfix_image).
    """
    check = Checker()
    if not isinstance(obj, dict):
        raise SpecError([f"document: must be a MailRelay object, got {kind(obj)}"])
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        check.fail(
            "apiVersion/kind",
            f"must be {API_VERSION} {KIND}, got {quote(obj.get('apiVersion'))} {quote(obj.get('kind'))}",
        )
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        check.fail("metadata", f"must be an object with a name, got {kind(meta)}")
        meta = {"name": "unnamed"}
    name = meta.get("name")
    if not isinstance(name, str) or not DNS1035_RE.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        check.fail(
            "metadata.name",
            f"must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
            f"(lower-case letters, digits, '-', starting with a letter), got {quote(name)}",
        )
    namespace = meta.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not DNS1123_LABEL_RE.fullmatch(namespace)):
        check.fail("metadata.namespace", f"must be a DNS-1123 label, got {quote(namespace)}")
    spec = _parse_spec(check, obj.get("spec"), default_image)
    if check.problems or spec is None:
        raise SpecError(check.problems)
    generation = meta.get("generation")
    return MailRelay(
        name=str(name),
        namespace=str(namespace or "default"),
        spec=spec,
        uid=meta.get("uid"),
        generation=generation if isinstance(generation, int) else None,
    )


_SPEC_FIELDS = (
    {
        "mailFromFQDN",
        "rewrite",
        "relay",
        "smarthostRef",
        "allowedNetworks",
        "messageSizeLimitBytes",
        "replicas",
        "image",
        "resources",
        "nodeSelector",
        "tolerations",
        "service",
        "dkim",
        "queue",
    }
    | POD_FIELDS
    | guardrails.FIELDS
)


def _parse_spec(check: Checker, raw: Any, default_image: str) -> MailRelaySpec | None:
    spec = check.mapping("spec", raw, _SPEC_FIELDS)
    if spec is None:
        return None
    if "mailFromFQDN" not in spec:
        check.fail("spec.mailFromFQDN", "is required: the domain every relayed sender is rewritten to")
        fqdn = None
    else:
        fqdn = check.hostname("spec.mailFromFQDN", spec["mailFromFQDN"], need_dot=True)
        if fqdn is not None and _PUBLIC_SUFFIXES.is_public(fqdn):
            check.fail(
                "spec.mailFromFQDN",
                f"{quote(fqdn)} is a public suffix (like com or co.uk), not a domain you can send from",
            )
    keep, rules = _parse_rewrite(check, spec.get("rewrite", {}))
    relay = _parse_relay(check, spec["relay"]) if spec.get("relay") is not None else None
    smarthost = _parse_smarthost_ref(check, spec)
    networks = _parse_networks(check, spec.get("allowedNetworks", list(DEFAULT_NETWORKS)))
    size = check.integer(
        "spec.messageSizeLimitBytes",
        spec.get("messageSizeLimitBytes", DEFAULT_MESSAGE_SIZE_LIMIT),
        MIN_MESSAGE_SIZE_LIMIT,
        MAX_MESSAGE_SIZE_LIMIT,
    )
    replicas = check.integer("spec.replicas", spec.get("replicas", 1), 0, MAX_REPLICAS)
    image = check.token("spec.image", spec.get("image", default_image), "an image reference", 512)
    resources = parse_resources(check, spec.get("resources", {}))
    node_selector = parse_node_selector(check, spec.get("nodeSelector", {}))
    tolerations = parse_tolerations(check, spec.get("tolerations", []))
    service = _parse_service(check, spec.get("service", {}))
    dkim = parse_dkim(check, spec["dkim"], fqdn) if spec.get("dkim") is not None else None
    queue_storage = parse_queue(check, spec.get("queue", {}))
    pod = parse_pod(check, spec)
    tenant = guardrails.parse(check, spec)
    if check.problems or pod is None:
        return None
    assert fqdn is not None and networks is not None and size is not None and replicas is not None
    assert image is not None and resources is not None and node_selector is not None
    assert tolerations is not None and service is not None and tenant is not None
    return MailRelaySpec(
        mail_from_fqdn=fqdn,
        keep_domains=keep,
        rules=rules,
        relay=relay,
        smarthost=smarthost,
        allowed_networks=networks,
        message_size_limit=size,
        replicas=replicas,
        image=image,
        resources=resources,
        node_selector=node_selector,
        tolerations=tolerations,
        service=service,
        pod=pod,
        queue_storage=queue_storage,
        guardrails=tenant,
        dkim=dkim,
    )


def _parse_rewrite(check: Checker, raw: Any) -> tuple[tuple[str, ...], tuple[RewriteRule, ...]]:
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
            check.fail(f"spec.rewrite.keepDomains[{i}]", f"duplicate entry {quote(host)}")
        elif _PUBLIC_SUFFIXES.is_public(host):
            check.fail(
                f"spec.rewrite.keepDomains[{i}]",
                f"{quote(host)} is a public suffix (like com or co.uk): "
                "keeping it would let a pod send as anyone under it",
            )
        keep.append(host)
    rules: list[RewriteRule] = []
    raw_rules = check.string_list("spec.rewrite.rules", rewrite.get("rules", []), MAX_RULES) or []
    for i, item in enumerate(raw_rules):
        rule = parse_rule(check, f"spec.rewrite.rules[{i}]", item)
        if rule is not None:
            rules.append(rule)
    return tuple(keep), tuple(rules)


def _parse_smarthost_ref(check: Checker, spec: dict[str, Any]) -> str | None:
    """spec.smarthostRef: the platform's smarthost, instead of a relay of one's own (never both)."""
    if spec.get("smarthostRef") is None:
        return None
    ref = check.mapping("spec.smarthostRef", spec["smarthostRef"], {"name", "kind"})
    if ref is None:
        return None
    if ref.get("kind", SMARTHOST_KIND) != SMARTHOST_KIND:
        check.fail("spec.smarthostRef.kind", f"must be {SMARTHOST_KIND}, got {ref.get('kind')!r}")
    name = check.string("spec.smarthostRef.name", ref.get("name"))
    if name is not None and (not DNS1035_RE.fullmatch(name) or len(name) > MAX_SMARTHOST_NAME):
        check.fail("spec.smarthostRef.name", f"{name!r} is not a ClusterSmarthost name")
        name = None
    if spec.get("relay") is not None:
        check.fail("spec.smarthostRef", "and spec.relay exclude each other: the ClusterSmarthost is the relay")
    egress = spec.get("egress")
    if isinstance(egress, dict) and egress.get("smarthostNetworks"):
        check.fail(
            "spec.egress.smarthostNetworks",
            "does not apply with spec.smarthostRef: the ClusterSmarthost's egress tier is inside the cluster",
        )
    return name


RELAY_FIELDS = {"host", "port", "tls", "authSecretRef", "authType", "oauth2"}


def _parse_relay(check: Checker, raw: Any) -> Relay | None:
    relay = check.mapping("spec.relay", raw, RELAY_FIELDS)
    return None if relay is None else parse_relay(check, relay, "spec.relay", "when relay is set")


def parse_relay(check: Checker, relay: dict[str, Any], path: str, required: str = "") -> Relay | None:
    """A smarthost and its login (host, port, tls, authType, authSecretRef, oauth2) from the mapping at
    `path`: a MailRelay's spec.relay, or a ClusterSmarthost's spec (api/smarthost.py)."""
    if "host" not in relay:
        check.fail(f"{path}.host", f"is required {required}".rstrip())
        host = None
    else:
        host = _parse_relay_host(check, f"{path}.host", relay["host"])
    port = check.integer(f"{path}.port", relay.get("port", 587), 1, 65535)
    tls = relay.get("tls", "Encrypt")
    if tls not in TLS_LEVELS:
        check.fail(f"{path}.tls", f"must be one of {', '.join(TLS_LEVELS)}, got {quote(tls)}")
        tls = None
    elif tls == "Wrapper" and port is not None and port != SMTPS_PORT:
        check.fail(f"{path}.tls", f"Wrapper (SMTPS) needs port {SMTPS_PORT}, got port {port}")
        tls = None
    secret = None
    if relay.get("authSecretRef") is not None:
        secret = check.secret_ref(f"{path}.authSecretRef", relay["authSecretRef"])
    oauth2 = _parse_login(check, relay, tls, path)
    if host is None or port is None or tls is None or (relay.get("authType") == "OAuth2" and oauth2 is None):
        return None
    return Relay(host=host, port=port, tls=tls, auth_secret=secret, oauth2=oauth2)


def _parse_login(check: Checker, relay: dict[str, Any], tls: str | None, path: str) -> OAuth2 | None:
    """authType Password (authSecretRef, or no login) or OAuth2 (oauth2), never both."""
    auth_type = relay.get("authType", "Password")
    if auth_type not in AUTH_TYPES:
        check.fail(f"{path}.authType", f"must be one of {', '.join(AUTH_TYPES)}, got {auth_type!r}")
        return None
    if auth_type == "Password":
        if relay.get("oauth2") is not None:
            check.fail(f"{path}.oauth2", "needs authType: OAuth2")
        return None
    if relay.get("authSecretRef") is not None:
        check.fail(f"{path}.authSecretRef", "is for authType Password; OAuth2 takes its Secret in oauth2.secretRef")
    if tls not in (None, "Encrypt", "Wrapper"):
        check.fail(
            f"{path}.tls",
            f"must be Encrypt or Wrapper with OAuth2 (a bearer token never goes in clear text), got {tls}",
        )
    if relay.get("oauth2") is None:
        check.fail(f"{path}.oauth2", "is required with authType OAuth2")
        return None
    return parse_oauth2(check, relay["oauth2"], f"{path}.oauth2")


def _parse_relay_host(check: Checker, path: str, value: Any) -> str | None:
    """A host name, an IPv4 address or an IPv6 address without a %zone (a zone is free text)."""
    if isinstance(value, str) and ":" in value:
        address = grammar.ip_literal(value)
        if address is None:
            check.fail(path, f"{quote(value)} is not an IPv6 address (no %zone, no brackets)")
        return address
    if isinstance(value, str) and grammar.full(r"[0-9.]+", value):
        address = grammar.ip_literal(value)
        if address is None:
            check.fail(path, f"{quote(value)} is not an IPv4 address")
        return address
    return check.hostname(path, value, need_dot=False)


def _parse_networks(check: Checker, raw: Any) -> tuple[str, ...] | None:
    items = check.string_list("spec.allowedNetworks", raw, 100)
    if items is None:
        return None
    if not items:
        check.fail("spec.allowedNetworks", "must list at least one network; an empty list would let no pod relay")
        return None
    return check.networks("spec.allowedNetworks", items, _network_problem)


def _network_problem(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """Why a network must not be trusted to relay, or None: the open-relay rule (docs/security.md)."""
    if network.prefixlen == 0:
        return "matches every address and would make an open relay"
    if isinstance(network, ipaddress.IPv6Network) and network.overlaps(IPV4_IN_IPV6):
        return (
            "overlaps ::/8, where IPv4-mapped and NAT64 addresses stand for the IPv4 Internet "
            "(loopback is always allowed)"
        )
    if network.prefixlen >= MIN_PUBLIC_PREFIX[network.version]:
        return None
    if any(
        network.version == private.version and network.subnet_of(private)  # type: ignore[arg-type]
        for private in NON_PUBLIC_NETWORKS
    ):
        return None
    return (
        f"is public address space wider than /{MIN_PUBLIC_PREFIX[network.version]}: that would let much of "
        "the Internet relay; list your cluster's pod network (private ranges may be wider)"
    )


def _parse_service(check: Checker, raw: Any) -> ServiceSpec | None:
    service = check.mapping("spec.service", raw, {"name", "port"})
    if service is None:
        return None
    name = check.string("spec.service.name", service.get("name", "mail"))
    if name is not None and not DNS1035_RE.fullmatch(name):
        check.fail(
            "spec.service.name",
            f"{quote(name)} is not a DNS-1035 label (lower-case letters, digits, '-', "
            "starting with a letter, at most 63 characters)",
        )
        name = None
    port = check.integer("spec.service.port", service.get("port", 25), 1, 65535)
    if name is None or port is None:
        return None
    return ServiceSpec(name=name, port=port)
