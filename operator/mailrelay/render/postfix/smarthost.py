"""A ClusterSmarthost's egress tier as Postfix sees it: a relay that tenants' relays log in to.

Nothing is rewritten here (each tenant relay has rewritten its senders already); every client must
log in (Cyrus SASL, sasldb, after STARTTLS) before it may relay, and the envelope sender must belong
to the login (`sender_logins`). The sender gate (mailrelay.gate) then checks the header senders and
the namespace's rate limits. The smtpd answers 4xx where it would answer 5xx (soft_bounce on that
service only), so a refusal never turns a tenant's message into a bounce: it waits in the tenant
relay's queue. The smtp client side is a relay's own: the smarthost, its TLS level and its login.
"""

from __future__ import annotations

from mailrelay.api.smarthost import REALM
from mailrelay.api.spec import Relay
from mailrelay.gate.logins import SASL_DIR, SASL_PASSWORDS, SENDER_LOGINS
from mailrelay.render import postfix

GATE_LISTEN = "127.0.0.1:10026"  # the sender gate, in the same pod (loopback only)
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"  # copied into the config directory by `mailrelay-gate logins`


def main_cf(hostname: str, relay: Relay, message_size_limit: int) -> str:
    loopback = " ".join(postfix.postfix_network(n) for n in postfix.LOOPBACK_NETWORKS)
    params: list[tuple[str, str]] = [
        *postfix.identity(hostname),
        # No client is trusted by address: the probes on loopback get as far as MAIL FROM.
        ("mynetworks", loopback),
        ("smtpd_client_restrictions", ""),
        ("smtpd_relay_restrictions", "permit_sasl_authenticated, reject"),
        ("smtpd_recipient_restrictions", "permit_sasl_authenticated, reject"),
        ("smtpd_sender_restrictions", "reject_non_fqdn_sender, reject_sender_login_mismatch"),
        ("smtpd_sender_login_maps", f"regexp:${{config_directory}}/{SENDER_LOGINS}"),
        ("smtpd_sasl_auth_enable", "yes"),
        ("smtpd_sasl_type", "cyrus"),
        ("smtpd_sasl_path", "smtpd"),
        ("cyrus_sasl_config_path", f"${{config_directory}}/{SASL_DIR}"),
        ("smtpd_sasl_local_domain", REALM),
        ("smtpd_sasl_security_options", "noanonymous"),
        ("smtpd_sasl_tls_security_options", "noanonymous"),
        # A login only after STARTTLS; tenant relays pin this certificate (smtp_tls_fingerprint_cert_match).
        ("smtpd_tls_auth_only", "yes"),
        ("smtpd_tls_security_level", "may"),
        ("smtpd_tls_cert_file", f"${{config_directory}}/{TLS_CERT}"),
        ("smtpd_tls_key_file", f"${{config_directory}}/{TLS_KEY}"),
        ("smtpd_tls_protocols", ">=TLSv1.2"),
        ("smtpd_tls_mandatory_protocols", ">=TLSv1.2"),
        ("smtpd_tls_loglevel", "1"),
        ("smtpd_milters", f"inet:{GATE_LISTEN}"),
        ("milter_default_action", "tempfail"),
        ("milter_protocol", "6"),
        *postfix.smtpd_hardening(message_size_limit),
        # Tenants sign with DKIM: an 8-bit body converted to 7-bit on the way out would break it.
        ("disable_mime_output_conversion", "yes"),
        # Per-client anvil limits count tenant relay pods, not tenants: the gate counts namespaces.
        ("smtpd_client_event_limit_exceptions", loopback),
        *postfix.output(),
        *postfix.relay_params(relay),
        # The password map holds the hand-off login too (the drain's), whatever the smarthost's login.
        ("smtp_sasl_password_maps", f"texthash:${{config_directory}}/{SASL_PASSWORDS}"),
        ("smtp_sasl_tls_security_options", "noanonymous"),
    ]
    return postfix.file(params)


def master_cf() -> str:
    """The relay's service table, its smtpd never refusing for good (soft_bounce on that service)."""
    lines = postfix.master_cf().splitlines()
    smtpd = next(i for i, line in enumerate(lines) if line.split()[:2] == ["smtp", "inet"])
    lines[smtpd] += " -o soft_bounce=yes"
    return "\n".join(lines) + "\n"
