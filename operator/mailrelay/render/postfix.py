"""Everything the project knows about Postfix: each parameter, the service table and the maps.

Files are rendered from a validated spec only, so every value here is already known to be safe for
a single `name = value` or map line; rendering still refuses any line break or control character
(UnsafeValue), so a validation gap cannot become configuration injection. Maps are named through
`${config_directory}` so the same files work in the image, in a test's temporary directory and in
local mode.
"""

from __future__ import annotations

import ipaddress
import re

from mailrelay.api.spec import MailRelaySpec, Relay, SpecError
from mailrelay.render import opendkim, xoauth2
from mailrelay.render.headers import KEPT_HEADERS, KEPT_PREFIX

MAIN_CF = "main.cf"
MASTER_CF = "master.cf"
SENDER_CANONICAL = "sender_canonical"  # the user's rules
SENDER_DOMAINS = "sender_domains"  # the guarantee: anything not at a kept domain goes to @mailFromFQDN
HEADER_CHECKS = "header_checks"
SMTP_HEADER_CHECKS = "smtp_header_checks"
RECIPIENT_ACCESS = "recipient_access"  # only with spec.recipients.allowDomains
COMMAND_FILTER = "command_filter"  # only with spec.recipients.allowDomains
SASL_PASSWORDS = "sasl_passwd"  # written at start-up by the entrypoint from the Secret, never rendered
CONFIG_FILES = (MAIN_CF, MASTER_CF, SENDER_CANONICAL, SENDER_DOMAINS, HEADER_CHECKS, SMTP_HEADER_CHECKS)
NOT_NULL_SENDER = 'if !/^""$/'  # regexp_table(5) block: the null sender (bounces) is never rewritten
# The user's rules see addresses of at most this many characters (RFC 5321's limit for a path is 256
# octets with the brackets): their cost grows with the address, which a header can make 100 kB long.
# Longer addresses skip them and get the default rewrite.
MAX_RULE_ADDRESS = 254
_UNSAFE = re.compile(r"[^\x20-\x7e]")


class UnsafeValue(SpecError):
    """A rendered line would carry a control character or line break: refused, never written."""


def _safe(line: str) -> str:
    if _UNSAFE.search(line):
        raise UnsafeValue([f"refusing to render a Postfix line with a control character: {line[:80]!r}"])
    return line


SMTP_PORT = 25
RECIPIENT_REFUSAL = "550 5.7.1 this relay only sends to the domains its MailRelay allows (spec.recipients.allowDomains)"
# What smtpd_command_filter makes of a RCPT TO whose address is not a plain local@domain, and its answer.
UNPLAIN_RECIPIENT = "recipient-syntax@mailrelay.invalid"
UNPLAIN_REFUSAL = (
    "550 5.1.3 with spec.recipients.allowDomains this relay takes only plain local@domain recipients: "
    "no bare postmaster or other name without a domain, no quoted, routed or commented address"
)
# A plain address as regexp_table(5) (POSIX, inside brackets a backslash is literal): a dot-atom or
# quoted local part, '@', a domain or an address literal; nothing the parser could turn into a bare name.
_PLAIN_LOCAL = r'([^][<>()@,;:\"[:space:]]+|"([^"\]|\\.)*")'
_PLAIN_DOMAIN = r"([^][<>()@,;:\"[:space:]]+|\[[^]]*\])"

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
        # Decided at connect: a client outside mynetworks gets 554 and then 503 for every command,
        # so not even RCPT TO:<postmaster> (which skips the recipient restrictions) is accepted.
        ("smtpd_delay_reject", "no"),
        ("smtpd_client_restrictions", "permit_mynetworks, reject"),
        ("smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination"),
        ("smtpd_recipient_restrictions", ", ".join([*_recipient_checks(spec), "permit_mynetworks", "reject"])),
        ("smtpd_banner", "$myhostname ESMTP"),
        ("disable_vrfy_command", "yes"),
        # SMTP smuggling: only <CR><LF>.<CR><LF> ends DATA, for every client (the default exempts
        # $mynetworks, which here is every client). A bare <LF> elsewhere is read as <CR><LF>.
        ("smtpd_forbid_bare_newline", "normalize"),
        ("smtpd_forbid_bare_newline_exclusions", ""),
        ("smtpd_forbid_unauth_pipelining", "yes"),
        ("message_size_limit", str(spec.message_size_limit)),
        ("mailbox_size_limit", "0"),
        # Sender rewriting, envelope and header senders, for pod clients too: the user's rules first,
        # then canonical_maps (applied after sender_canonical_maps, each to its own fixed point)
        # sends whatever is not at a kept domain to @mailFromFQDN, whatever a rule returned.
        ("sender_canonical_maps", f"regexp:${{config_directory}}/{SENDER_CANONICAL}"),
        ("sender_canonical_classes", "envelope_sender, header_sender"),
        ("canonical_maps", f"regexp:${{config_directory}}/{SENDER_DOMAINS}"),
        ("canonical_classes", "envelope_sender, header_sender"),
        ("local_header_rewrite_clients", "permit_mynetworks"),
        ("header_checks", f"regexp:${{config_directory}}/{HEADER_CHECKS}"),
        # Headers of an attached message are its own: no copies in them (the default is $header_checks).
        ("nested_header_checks", ""),
        ("smtp_header_checks", f"regexp:${{config_directory}}/{SMTP_HEADER_CHECKS}"),
        # Logs go to the container's stdout; `postfix start-fg` keeps the master in the foreground.
        ("maillog_file", "/dev/stdout"),
        ("smtp_tls_CApath", "/etc/ssl/certs"),
        ("smtp_tls_loglevel", "1"),
    ]
    params += _relay_params(spec.relay)
    params += milter_params(spec)
    params += _guardrail_params(spec)
    params += _command_params(spec)
    lines = ["# Rendered by mailrelay-operator; changes are overwritten."]
    lines += [_safe(f"{name} = {value}".rstrip()) for name, value in params]
    return "\n".join(lines) + "\n"


def _relay_params(relay: Relay | None) -> list[tuple[str, str]]:
    if relay is None:
        return [("relayhost", ""), ("smtp_tls_security_level", "may")]
    if relay.oauth2 is not None:
        # The XOAUTH2 relay in the same pod logs in and does the TLS; Postfix only sees its loopback
        # port, with nothing to encrypt and no password. Its replies are the smarthost's own.
        return [
            ("relayhost", f"[{xoauth2.LISTEN_HOST}]:{xoauth2.LISTEN_PORT}"),
            ("smtp_tls_security_level", "none"),
            ("smtp_tls_wrappermode", "no"),
        ]
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


def _guardrail_params(spec: MailRelaySpec) -> list[tuple[str, str]]:
    """Per-client limits, counted by anvil per client address over one minute (0: no limit).

    Postfix exempts smtpd_client_event_limit_exceptions, by default $mynetworks, which holds every
    pod; only loopback (the probes and the drain) stays exempt. Over a limit Postfix answers 4xx
    (421 at connect, 450 at MAIL FROM or RCPT TO), so the client keeps the message and retries.
    """
    limits = spec.guardrails.limits
    return [
        ("anvil_rate_time_unit", "60s"),
        ("smtpd_client_event_limit_exceptions", " ".join(postfix_network(n) for n in LOOPBACK_NETWORKS)),
        ("smtpd_client_connection_count_limit", str(limits.concurrent_connections)),
        ("smtpd_client_message_rate_limit", str(limits.messages_per_minute)),
        ("smtpd_client_recipient_rate_limit", str(limits.recipients_per_minute)),
    ]


def _command_params(spec: MailRelaySpec) -> list[tuple[str, str]]:
    """With an allow-list, RCPT TO takes plain addresses only (see command_filter())."""
    if not spec.guardrails.allow_domains:
        return []
    return [("smtpd_command_filter", f"regexp:${{config_directory}}/{COMMAND_FILTER}")]


def command_filter(spec: MailRelaySpec) -> str:
    """Turn a RCPT TO that is not a plain local@domain into one the allow-list refuses.

    smtpd accepts a recipient that parses to a bare `postmaster` before any restriction (RFC 5321
    requires it, and no parameter turns that off): `<postmaster>`, `<"postmaster">`,
    `<@host:postmaster>`, `<postmaster(x@y)>` all passed the allow-list and went to
    postmaster@mailFromFQDN. The command filter runs on the raw line, before that parse, so every
    such form, and any other name without a domain, meets the refusal instead.
    """
    plain = rf"^RCPT[[:space:]]+TO:[[:space:]]*<?{_PLAIN_LOCAL}@{_PLAIN_DOMAIN}>?([[:space:]]|$)"
    return (
        "# Rendered by mailrelay-operator; changes are overwritten.\n"
        "# regexp_table(5), applied to each SMTP command line before smtpd parses it.\n"
        "if /^RCPT[[:space:]]/\n"
        f"!/{plain}/ RCPT TO:<{UNPLAIN_RECIPIENT}>\n"
        "endif\n"
    )


def _recipient_checks(spec: MailRelaySpec) -> list[str]:
    """The allow-list comes first among the recipient restrictions, so permit_mynetworks cannot skip it."""
    if not spec.guardrails.allow_domains:
        return []
    return [f"check_recipient_access regexp:${{config_directory}}/{RECIPIENT_ACCESS}"]


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


def master_cf() -> str:
    return _MASTER_CF


def _domain_regex(domain: str) -> str:
    return re.escape(domain).replace("\\-", "-")


def sender_canonical(spec: MailRelaySpec) -> str:
    """The user's rules, first match wins; each pattern's top-level branches anchored on their own."""
    lines = [
        "# Rendered by mailrelay-operator; changes are overwritten.",
        "# regexp_table(5): case-insensitive, first match wins. Results go through sender_domains.",
    ]
    lines += [NOT_NULL_SENDER, f"if !/^.{{{MAX_RULE_ADDRESS + 1}}}/"]
    lines += [_safe(f"/{rule.anchored}/ {rule.replacement}") for rule in spec.rules]
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
        lines.append(_safe(f"/^(.*@(.+\\.)?{_domain_regex(domain)})$/ ${{1}}"))
    lines.append(_safe(f"/^(.*)@[^@]*$/ ${{1}}@{fqdn}"))
    # trivial-rewrite completes a bare `root` with @$myorigin before the maps, so an address without
    # "@" here is a rule's result (completed here) or the null sender of bounces, looked up as `""`:
    # rewriting that would turn a bounce into ordinary mail and let bounces loop.
    lines += [NOT_NULL_SENDER, _safe(f"/^([^@]+)$/ ${{1}}@{fqdn}"), "endif"]
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


def config_files(spec: MailRelaySpec) -> dict[str, str]:
    """Every file of the ConfigMap; raises UnsafeValue rather than render a line break into one."""
    files = {
        MAIN_CF: main_cf(spec),
        MASTER_CF: master_cf(),
        SENDER_CANONICAL: sender_canonical(spec),
        SENDER_DOMAINS: sender_domains(spec),
        HEADER_CHECKS: header_checks(),
        SMTP_HEADER_CHECKS: smtp_header_checks(),
    }
    if spec.guardrails.allow_domains:
        files[RECIPIENT_ACCESS] = recipient_access(spec)
        files[COMMAND_FILTER] = command_filter(spec)
    return files
