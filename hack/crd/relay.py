"""The smarthost and its login (spec.relay), and DKIM signing (spec.dkim)."""

from __future__ import annotations

from typing import Any

from mailrelay.api import dkim, grammar, oauth2, spec
from mailrelay.api.spec import Relay

from crd.schema import integer, obj, rule, string, whole

RELAY: dict[str, Any] = obj(
    "A smarthost to send through. Without it, mail goes directly to each recipient's MX.",
    required=["host"],
    properties={
        "host": string(
            "Host name, IPv4 address or IPv6 address (without brackets or %zone) of the smarthost.",
            minLength=1,
            maxLength=253,
            pattern="^([A-Za-z0-9.-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$",
            rules=[
                rule(
                    (
                        f'self.contains(":") || self.matches(r"{whole(grammar.IPV4)}") || '
                        f'(self.matches(r"(?i){whole(grammar.HOSTNAME)}") '
                        f'&& self.matches(r"(?i){grammar.ALPHA_TOP_LABEL}"))'
                    ),
                    "host must be a host name (RFC 1123, last label with a letter) or an IP address",
                ),
            ],
        ),
        "port": integer(
            "Smarthost port; 587 for submission, 465 with tls Wrapper.",
            minimum=1,
            maximum=65535,
            default=Relay.port,
        ),
        "tls": string(
            (
                "None (plain text), May (STARTTLS when offered), Encrypt (STARTTLS required) or Wrapper (SMTPS, "
                "implicit TLS on port 465)."
            ),
            enum=list(spec.TLS_LEVELS),
            default=Relay.tls,
        ),
        "authSecretRef": obj(
            (
                "A Secret in the same namespace with keys username and password (authType Password). It must "
                "carry the annotation mailrelay.dev/relays listing this relay (comma-separated names, or *): "
                "whoever may edit the Secret decides which relays use it."
            ),
            required=["name"],
            properties={
                "name": string(
                    minLength=1,
                    maxLength=253,
                    pattern=whole(grammar.HOSTNAME),
                ),
            },
        ),
        "authType": string(
            (
                "How the relay logs in to the smarthost: Password (authSecretRef, or no login without it) or "
                "OAuth2 (SASL XOAUTH2 with an access token the operator keeps fresh; see oauth2)."
            ),
            enum=list(oauth2.AUTH_TYPES),
            default=oauth2.AUTH_TYPES[0],
        ),
        "oauth2": obj(
            (
                "The OAuth2 login (authType OAuth2): Microsoft 365 or Google Workspace, or any token endpoint. "
                "The operator obtains and refreshes the access token; relay pods never see the client secret or "
                "refresh token."
            ),
            required=["provider", "clientID", "grant", "secretRef", "username"],
            properties={
                "provider": string(
                    "Microsoft365 (token endpoint of tenantID), Google (oauth2.googleapis.com) or Custom (tokenURL).",
                    enum=list(oauth2.PROVIDERS),
                ),
                "tenantID": string(
                    "The Microsoft Entra directory (tenant) ID or a verified domain; Microsoft365 only.",
                    maxLength=253,
                    pattern=whole(f"({oauth2.TENANT})"),
                ),
                "tokenURL": string(
                    "The https token endpoint; Custom only.",
                    maxLength=2048,
                    pattern=whole(oauth2.TOKEN_URL),
                ),
                "scope": string(
                    (
                        "Scopes to request, separated by spaces. Defaults: https://outlook.office365.com/.default "
                        "(Microsoft365, ClientCredentials), https://outlook.office.com/SMTP.Send offline_access "
                        "(Microsoft365, RefreshToken), https://mail.google.com/ (Google); none for Custom."
                    ),
                    maxLength=1024,
                    pattern=whole(oauth2.SCOPE),
                ),
                "clientID": string(
                    "The application (client) ID.", minLength=1, maxLength=256, pattern=whole(grammar.PRINTABLE)
                ),
                "grant": string(
                    (
                        "ClientCredentials (the Secret's client-secret; Microsoft 365 app with SMTP.SendAsApp) or "
                        "RefreshToken (the Secret's refresh-token, and client-secret for confidential clients such as "
                        "Google's)."
                    ),
                    enum=list(oauth2.GRANTS),
                ),
                "secretRef": obj(
                    (
                        "A Secret in the same namespace with client-secret and/or refresh-token. A refresh token the "
                        "provider rotates is written back here."
                    ),
                    required=["name"],
                    properties={
                        "name": string(
                            minLength=1,
                            maxLength=253,
                            pattern=whole(grammar.HOSTNAME),
                        ),
                    },
                ),
                "username": string(
                    "The SMTP user name in the XOAUTH2 login, usually the sending mailbox's address.",
                    minLength=1,
                    maxLength=320,
                    pattern=whole(grammar.PRINTABLE),
                ),
            },
            rules=[
                rule(
                    "(self.provider == 'Microsoft365') == has(self.tenantID)",
                    "tenantID is required for provider Microsoft365 and only for it",
                ),
                rule(
                    "(self.provider == 'Custom') == has(self.tokenURL)",
                    "tokenURL is required for provider Custom and only for it",
                ),
                rule(
                    "self.provider != 'Google' || self.grant == 'RefreshToken'",
                    "Google sends Gmail only with a user's refresh token: use grant RefreshToken",
                ),
            ],
        ),
    },
    rules=[
        rule(
            "!(has(self.tls) && self.tls == 'Wrapper') || (has(self.port) && self.port == 465)",
            "tls Wrapper (SMTPS) needs port 465",
        ),
        rule(
            "(has(self.authType) && self.authType == 'OAuth2') == has(self.oauth2)",
            "oauth2 is required with authType OAuth2 and only with it",
        ),
        rule(
            "!has(self.oauth2) || !has(self.authSecretRef)",
            "authSecretRef is for authType Password; OAuth2 takes its Secret in oauth2.secretRef",
        ),
        rule(
            "!has(self.oauth2) || !has(self.tls) || self.tls == 'Encrypt' || self.tls == 'Wrapper'",
            "OAuth2 needs tls Encrypt or Wrapper: a bearer token never goes in clear text",
        ),
    ],
)

DKIM: dict[str, Any] = obj(
    (
        "Sign outgoing mail with DKIM (OpenDKIM in the relay pod). Mail whose From, after the sender "
        "rewrite, is in the signing domain or below it is signed; other kept domains are sent unsigned. "
        "Publish the TXT record(s) in status.dkim.records before relying on it."
    ),
    properties={
        "selector": string(
            (
                "The DNS label of the key: the record is <selector>._domainkey.<domain>. An Ed25519 key uses "
                "<selector>-ed25519."
            ),
            default=dkim.DEFAULT_SELECTOR,
            minLength=1,
            maxLength=52,
            pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        ),
        "domain": string(
            (
                "The signing domain (d=): mailFromFQDN (the default) or a parent domain of it, which still aligns "
                "with a From at mailFromFQDN under relaxed DMARC alignment. Lower case."
            ),
            minLength=3,
            maxLength=253,
            pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$",
        ),
        "keyType": string(
            ("RSA, or Ed25519, which signs twice (Ed25519 and RSA), since many receivers only check RSA signatures."),
            enum=list(dkim.KEY_TYPES),
            default=dkim.DEFAULT_KEY_TYPE,
        ),
        "rsaBits": integer(
            (
                "Size of a generated RSA key. A change applies to the next generated key (see the "
                "mailrelay.dev/rotate-dkim-key annotation)."
            ),
            enum=list(dkim.RSA_SIZES),
            default=dkim.DEFAULT_RSA_BITS,
        ),
        "keySecretRef": obj(
            (
                "Sign with your own keys from this Secret (keys rsa.private and, for Ed25519, ed25519.private, "
                "PEM), annotated mailrelay.dev/relays with this relay's name (or *). Without it, the operator "
                "generates the keys into the Secret mailrelay-<name>-dkim, which it owns, and keeps them until "
                "the MailRelay's mailrelay.dev/rotate-dkim-key annotation gets a new value."
            ),
            required=["name"],
            properties={
                "name": string(
                    minLength=1,
                    maxLength=253,
                    pattern=whole(grammar.DNS_SUBDOMAIN),
                ),
            },
        ),
    },
)
