"""Everything the project knows about Postfix: each parameter, the service table and the maps.

Files are rendered from a validated spec only, so every value here is already known to be safe for
a single `name = value` or map line. Maps are named through `${config_directory}` so the same files
work in the image, in a test's temporary directory and in local mode.
"""

from __future__ import annotations

import ipaddress
import re

from mailrelay import opendkim
from mailrelay.spec import GROUP_REFERENCE, MailRelaySpec, Relay

MAIN_CF = "main.cf"
MASTER_CF = "master.cf"
SENDER_CANONICAL = "sender_canonical"
SASL_PASSWORDS = "sasl_passwd"  # written at start-up by the entrypoint from the Secret, never rendered
CONFIG_FILES = (MAIN_CF, MASTER_CF, SENDER_CANONICAL)

SMTP_PORT = 25
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
        ("smtpd_recipient_restrictions", "permit_mynetworks, reject"),
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
    params += milter_params(spec)
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


# A parameter of our own naming OpenDKIM's runtime directory: the entrypoint sets it where the relay
# runs, and the milter parameters refer to it, so they stay the same everywhere.
OPENDKIM_DIR_PARAM = "mailrelay_opendkim_dir"


def milter_params(spec: MailRelaySpec) -> list[tuple[str, str]]:
    """Hand every message, from SMTP and from the container's own sendmail, to OpenDKIM for signing.

    The cleanup server rewrites the header senders before it sends the message to the milter, so
    the signature covers the addresses as they leave. A milter that fails tempfails the message:
    the client keeps it and retries, rather than the relay sending it unsigned.
    """
    if spec.dkim is None:
        return []
    milter = ", ".join(f"unix:${{{OPENDKIM_DIR_PARAM}}}/{opendkim.socket_name(a)}" for a in opendkim.algorithms(spec))
    return [
        (OPENDKIM_DIR_PARAM, opendkim.DEFAULT_RUNTIME_DIR),
        ("smtpd_milters", milter),
        ("non_smtpd_milters", milter),
        ("milter_default_action", "tempfail"),
        # Bounces and other notices the relay writes itself (From MAILER-DAEMON@mailFromFQDN) too.
        ("internal_mail_filter_classes", "bounce, notify"),
        ("milter_protocol", "6"),
        # 8-bit to 7-bit conversion on the way out would change a signed body.
        ("disable_mime_output_conversion", "yes"),
    ]


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
    return {MAIN_CF: main_cf(spec), MASTER_CF: master_cf(), SENDER_CANONICAL: sender_canonical(spec)}
