"""The Postfix lookup tables the operator renders (regexp_table(5)): each sender, header and recipient map.

Part of render.postfix, which re-exports everything here: the parameters that name these files
live in its __init__, the tables' syntax here. Every line comes from a validated spec and still
goes through `safe` (no control character, no line break).
"""

from __future__ import annotations

import re

from mailrelay.api.spec import MailRelaySpec, SpecError
from mailrelay.gate.tenants import HANDOFF_LOGIN, REALM, Tenant
from mailrelay.render.headers import KEPT_HEADERS, KEPT_PREFIX

NOT_NULL_SENDER = 'if !/^""$/'  # regexp_table(5) block: the null sender (bounces) is never rewritten
RECIPIENT_REFUSAL = "550 5.7.1 this relay only sends to the domains its MailRelay allows (spec.recipients.allowDomains)"
# The user's rules see addresses of at most this many characters (RFC 5321's limit for a path is 256
# octets with the brackets): their cost grows with the address, which a header can make 100 kB long.
# Longer addresses skip them and get the default rewrite.
MAX_RULE_ADDRESS = 254
# What smtpd_command_filter makes of a RCPT TO whose address is not a plain local@domain, and its answer.
UNPLAIN_RECIPIENT = "recipient-syntax@mailrelay.invalid"
UNPLAIN_REFUSAL = (
    "550 5.1.3 with spec.recipients.allowDomains this relay takes only plain local@domain recipients: "
    "no bare postmaster or other name without a domain, no quoted, routed or commented address"
)
_UNSAFE = re.compile(r"[^\x20-\x7e]")


class UnsafeValue(SpecError):
    """A rendered line would carry a control character or line break: refused, never written."""


def safe(line: str) -> str:
    if _UNSAFE.search(line):
        raise UnsafeValue([f"refusing to render a Postfix line with a control character: {line[:80]!r}"])
    return line


def recipient_access(spec: MailRelaySpec) -> str:
    """The regexp recipient map: allowed domains and their subdomains pass on (DUNNO), all else is refused.

    DUNNO rather than OK: the allow-list only narrows; the client checks after it still apply.
    Postfix looks up the recipient as it will route it, so `user%other@allowed` style tricks do not
    reach another domain (the percent hack only applies to local domains, and there are none).
    """
    lines = [
        "# Rendered by mailrelay-operator; changes are overwritten.",
        "# regexp_table(5): case-insensitive, first match wins.",
    ]
    lines.append(f"/^{_domain_regex(UNPLAIN_RECIPIENT)}$/ {UNPLAIN_REFUSAL}")
    lines += [f"/@([^@]+\\.)?{_domain_regex(domain)}$/ DUNNO" for domain in spec.guardrails.allow_domains]
    lines.append(f"/./ {RECIPIENT_REFUSAL}")
    return "\n".join(lines) + "\n"


def _domain_regex(domain: str) -> str:
    return re.escape(domain).replace("\\-", "-")


def sender_canonical(spec: MailRelaySpec) -> str:
    """The user's rules, first match wins; each pattern's top-level branches anchored on their own."""
    lines = [
        "# Rendered by mailrelay-operator; changes are overwritten.",
        "# regexp_table(5): case-insensitive, first match wins. Results go through sender_domains.",
    ]
    lines += [NOT_NULL_SENDER, f"if !/^.{{{MAX_RULE_ADDRESS + 1}}}/"]
    lines += [safe(f"/{rule.anchored}/ {rule.replacement}") for rule in spec.rules]
    lines += ["endif", "endif"]
    return "\n".join(lines) + "\n"


def sender_domains(spec: MailRelaySpec) -> str:
    """Kept domains stay, everything else goes to @mailFromFQDN.

    Postfix re-applies a map to its own result until a lookup returns the address unchanged, and
    stops there; this map is applied after the rules' map, so even a rule that maps an address to
    itself (which ends the rules' map) cannot make mail leave from an unlisted domain.
    """
    fqdn = spec.mail_from_fqdn
    lines = ["# Rendered by mailrelay-operator; changes are overwritten."]
    for domain in (fqdn, *spec.keep_domains):
        lines.append(safe(f"/^(.*@(.+\\.)?{_domain_regex(domain)})$/ ${{1}}"))
    lines.append(safe(f"/^(.*)@[^@]*$/ ${{1}}@{fqdn}"))
    # trivial-rewrite completes a bare `root` with @$myorigin before the maps, so an address without
    # "@" here is a rule's result (completed here) or the null sender of bounces, looked up as `""`:
    # rewriting that would turn a bounce into ordinary mail and let bounces loop.
    lines += [NOT_NULL_SENDER, safe(f"/^([^@]+)$/ ${{1}}@{fqdn}"), "endif"]
    return "\n".join(lines) + "\n"


def header_checks() -> str:
    """Copy each reply header under a private name before the canonical maps rewrite it (headers.py).

    A private name arriving from a client is dropped first, so nobody can smuggle a header that
    would be renamed into a reply header on the way out.
    """
    names = "|".join(KEPT_HEADERS)
    return (
        "# Rendered by mailrelay-operator; changes are overwritten.\n"
        f"/^{KEPT_PREFIX}/ IGNORE\n"
        f"/^({names}):(.*)$/ PREPEND {KEPT_PREFIX}${{1}}:${{2}}\n"
    )


def smtp_header_checks() -> str:
    """As the message leaves: drop the rewritten reply headers, give the copies their names back."""
    names = "|".join(KEPT_HEADERS)
    return (
        "# Rendered by mailrelay-operator; changes are overwritten.\n"
        f"/^({names}):/ IGNORE\n"
        f"/^{KEPT_PREFIX}({names}):(.*)$/ REPLACE ${{1}}:${{2}}\n"
    )


def _covered(domain: str, domains: tuple[str, ...]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in domains)


def sender_logins(tenants: tuple[Tenant, ...]) -> str:
    """A ClusterSmarthost egress tier's smtpd_sender_login_maps: sender domain → the logins that own it.

    A regexp table answers with its first match, so a domain lists every login whose domains cover
    it (its own, or a parent's), most specific domains first. The egress replicas' hand-off login
    owns every address, the last line included: mail a revoked tenant handed over earlier must still
    move between replicas on a drain; tenants can never log in as it.
    """
    handoff = f"{HANDOFF_LOGIN}@{REALM}"
    domains = sorted({d for t in tenants for d in t.domains}, key=lambda d: (-d.count("."), d))
    lines = [
        "# Rendered by mailrelay-operator; changes are overwritten.",
        "# regexp_table(5): case-insensitive, first match wins: sender domain -> the logins that may use it.",
    ]
    for domain in domains:
        owners = sorted(f"{t.login}@{REALM}" for t in tenants if _covered(domain, t.domains))
        lines.append(safe(f"/@([^@]+\\.)?{_domain_regex(domain)}$/ {', '.join([*owners, handoff])}"))
    lines.append(f"/./ {handoff}")
    return "\n".join(lines) + "\n"
