"""Everything the project knows about Postfix: each parameter, the service table and the maps.

Files are rendered from a validated spec only, so every value here is already known to be safe for
a single `name = value` or map line. Maps are named through `${config_directory}` so the same files
work in the image, in a test's temporary directory and in local mode.
"""

from __future__ import annotations

import ipaddress
import re

from mailrelay.spec import GROUP_REFERENCE, MailRelaySpec, Relay

MAIN_CF = "main.cf"
MASTER_CF = "master.cf"
SENDER_CANONICAL = "sender_canonical"
RECIPIENT_ACCESS = "recipient_access"  # only with spec.recipients.allowDomains
SASL_PASSWORDS = "sasl_passwd"  # written at start-up by the entrypoint from the Secret, never rendered
CONFIG_FILES = (MAIN_CF, MASTER_CF, SENDER_CANONICAL)

SMTP_PORT = 25
RECIPIENT_REFUSAL = ("550 5.7.1 this relay only sends to the domains its MailRelay allows "
                     "(spec.recipients.allowDomains)")
LOOPBACK_NETWORKS = ("127.0.0.1/32", "::1/128")

_TLS_LEVEL = {"None": "none", "May": "may", "Encrypt": "encrypt", "Wrapper": "encrypt"}

# The service table: no chroot (nothing to copy into one, and no CAP_SYS_CHROOT needed), logging
# through postlogd so `maillog_file = /dev/stdout` works for `postfix start-fg`.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_network(cidr: str) -> str:
    """Postfix writes IPv6 networks as [addr]/len."""
    network = ipaddress.ip_network(cidr)
    if network.version == 6:
        return f"[{network.network_address}]/{network.prefixlen}"
    return str(network)


def smarthost_port(spec: MailRelaySpec) -> int:
    """The one port the relay sends to: the smarthost's, or SMTP at each recipient's MX."""
    return spec.relay.port if spec.relay else SMTP_PORT


def relayhost(relay: Relay) -> str:
    """`[host]:port`: brackets turn off MX lookup, as a smarthost is a host, not a domain."""
    host = relay.host
    if ":" in host:
        host = f"ipv6:{host}"
    return f"[{host}]:{relay.port}"


def main_cf(spec: MailRelaySpec) -> str:
    networks = " ".join(postfix_network(n) for n in (*LOOPBACK_NETWORKS, *spec.allowed_networks))
    params: list[tuple[str, str]] = [
        ("compatibility_level", "3.6"),
        # Identity: HELO and bare addresses use the sending domain; nothing is delivered here.
        ("myhostname", spec.mail_from_fqdn),
        ("mydomain", spec.mail_from_fqdn),
        ("myorigin", spec.mail_from_fqdn),
        ("mydestination", ""),
        ("local_recipient_maps", ""),
        ("alias_maps", ""),
        ("alias_database", ""),
        ("local_transport", "error:this relay delivers no mail locally"),
        ("append_dot_mydomain", "no"),
        ("biff", "no"),
        # Closed relay: only the allowed networks (and loopback, for the probes) may send.
        ("inet_interfaces", "all"),
        ("inet_protocols", "all"),
        ("mynetworks", networks),
        ("smtpd_client_restrictions", "permit_mynetworks, reject"),
        ("smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination"),
        ("smtpd_recipient_restrictions", ", ".join([*_recipient_checks(spec), "permit_mynetworks", "reject"])),
        ("smtpd_banner", "$myhostname ESMTP"),
        ("disable_vrfy_command", "yes"),
        ("message_size_limit", str(spec.message_size_limit)),
        ("mailbox_size_limit", "0"),
        # Sender rewriting: envelope and header senders, for pod clients too, not just local ones.
        ("sender_canonical_maps", f"regexp:${{config_directory}}/{SENDER_CANONICAL}"),
        ("sender_canonical_classes", "envelope_sender, header_sender"),
        ("local_header_rewrite_clients", "permit_mynetworks"),
        # Logs go to the container's stdout; `postfix start-fg` keeps the master in the foreground.
        ("maillog_file", "/dev/stdout"),
        ("smtp_tls_CApath", "/etc/ssl/certs"),
        ("smtp_tls_loglevel", "1"),
    ]
    params += _relay_params(spec.relay)
    params += _guardrail_params(spec)
    lines = ["# Rendered by mailrelay-operator; changes are overwritten."]
    lines += [f"{name} = {value}".rstrip() for name, value in params]
    return "\n".join(lines) + "\n"


def _relay_params(relay: Relay | None) -> list[tuple[str, str]]:
    if relay is None:
        return [("relayhost", ""), ("smtp_tls_security_level", "may")]
    params = [
        ("relayhost", relayhost(relay)),
        ("smtp_tls_security_level", _TLS_LEVEL[relay.tls]),
        ("smtp_tls_wrappermode", "yes" if relay.tls == "Wrapper" else "no"),
    ]
    if relay.auth_secret:
        params += [
            ("smtp_sasl_auth_enable", "yes"),
            ("smtp_sasl_password_maps", f"texthash:${{config_directory}}/{SASL_PASSWORDS}"),
            # Without TLS the user chose plaintext; with May, the password only goes over TLS.
            ("smtp_sasl_security_options", "noanonymous" if relay.tls == "None" else "noplaintext, noanonymous"),
            ("smtp_sasl_tls_security_options", "noanonymous"),
        ]
    return params


def _guardrail_params(spec: MailRelaySpec) -> list[tuple[str, str]]:
    """Per-client limits, counted by anvil per client address over one minute (0: no limit).

    Postfix exempts smtpd_client_event_limit_exceptions, by default $mynetworks, which holds every
    pod; only loopback (the probes and the drain) stays exempt. Over a limit Postfix answers 4xx
    (421 at connect, 450 at MAIL FROM or RCPT TO), so the client keeps the message and retries.
    """
    limits = spec.guard.limits
    return [
        ("anvil_rate_time_unit", "60s"),
        ("smtpd_client_event_limit_exceptions", " ".join(postfix_network(n) for n in LOOPBACK_NETWORKS)),
        ("smtpd_client_connection_count_limit", str(limits.concurrent_connections)),
        ("smtpd_client_message_rate_limit", str(limits.messages_per_minute)),
        ("smtpd_client_recipient_rate_limit", str(limits.recipients_per_minute)),
    ]


def _recipient_checks(spec: MailRelaySpec) -> list[str]:
    """The allow-list comes first among the recipient restrictions, so permit_mynetworks cannot skip it."""
    if not spec.guard.allow_domains:
        return []
    return [f"check_recipient_access regexp:${{config_directory}}/{RECIPIENT_ACCESS}"]


def recipient_access(spec: MailRelaySpec) -> str:
    """The regexp recipient map: allowed domains and their subdomains pass on (DUNNO), all else is refused.

    DUNNO rather than OK: the allow-list only narrows; the client checks after it still apply.
    Postfix looks up the recipient as it will route it, so `user%other@allowed` style tricks do not
    reach another domain (the percent hack only applies to local domains, and there are none).
    """
    lines = ["# Rendered by mailrelay-operator; changes are overwritten.",
             "# regexp_table(5): case-insensitive, first match wins."]
    lines += [f"/@([^@]+\\.)?{_domain_regex(domain)}$/ DUNNO" for domain in spec.guard.allow_domains]
    lines.append(f"/./ {RECIPIENT_REFUSAL}")
    return "\n".join(lines) + "\n"


def master_cf() -> str:
    return _MASTER_CF


def _domain_regex(domain: str) -> str:
    return re.escape(domain).replace("\\-", "-")



def _shift_groups(replacement: str) -> str:
    """User groups move up by one because the pattern is wrapped in ^( )$."""

    def shift(match: re.Match[str]) -> str:
        if match.group(3):
            return "$$"
        return f"${{{int(match.group(1) or match.group(2)) + 1}}}"

    return GROUP_REFERENCE.sub(shift, replacement)


def sender_canonical(spec: MailRelaySpec) -> str:
    """The regexp sender map: user rules, then kept domains, then everything to @mailFromFQDN.

    Postfix re-applies a canonical map to its own result until the address stops changing, so a
    rule's result is final only when it lands on a kept domain (or mailFromFQDN); anything else is
    rewritten to @mailFromFQDN. No mail leaves from a domain the relay's owner did not list.
    """
    fqdn = spec.mail_from_fqdn
    lines = ["# Rendered by mailrelay-operator; changes are overwritten.",
             "# regexp_table(5): case-insensitive, first match wins."]
    for rule in spec.rules:
        lines.append(f"/^({rule.pattern})$/ {_shift_groups(rule.replacement)}")
    for domain in (fqdn, *spec.keep_domains):
        lines.append(f"/^(.*@(.+\\.)?{_domain_regex(domain)})$/ ${{1}}")
    # Every address here has a domain: trivial-rewrite completes a bare `root` with @$myorigin before
    # the map is consulted. The one address without "@" is the null sender of bounces, which Postfix
    # looks up as `""`; rewriting it would turn a bounce into ordinary mail and let bounces loop.
    lines.append(f"/^(.*)@[^@]*$/ ${{1}}@{fqdn}")
    return "\n".join(lines) + "\n"


def config_files(spec: MailRelaySpec) -> dict[str, str]:
    files = {MAIN_CF: main_cf(spec), MASTER_CF: master_cf(), SENDER_CANONICAL: sender_canonical(spec)}
    if spec.guard.allow_domains:
        files[RECIPIENT_ACCESS] = recipient_access(spec)
    return files
