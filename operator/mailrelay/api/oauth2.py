"""`spec.relay.oauth2`: a smarthost login with OAuth2 (SASL XOAUTH2) instead of a password.

Where the token comes from (a provider preset or any https token endpoint), which grant (client
credentials: Microsoft 365's service principal with SMTP.SendAsApp; or a refresh token: Gmail,
delegated Microsoft 365), the Secret with the client secret or refresh token, and the SMTP user name
the provider expects. The same rules as the CRD (OpenAPI and CEL), each problem naming its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mailrelay.api import grammar
from mailrelay.api.checker import Checker

Provider = Literal["Microsoft365", "Google", "Custom"]
Grant = Literal["ClientCredentials", "RefreshToken"]
PROVIDERS: tuple[str, ...] = ("Microsoft365", "Google", "Custom")
GRANTS: tuple[str, ...] = ("ClientCredentials", "RefreshToken")
AUTH_TYPES: tuple[str, ...] = ("Password", "OAuth2")
FIELDS = {"provider", "tenantID", "tokenURL", "scope", "clientID", "grant", "secretRef", "username"}

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
# Client credentials against Exchange Online ask for the app's granted permissions (SMTP.SendAsApp)
# through `.default`; a delegated refresh token asks for SMTP.Send and offline_access again.
DEFAULT_SCOPES = {
    ("Microsoft365", "ClientCredentials"): "https://outlook.office365.com/.default",
    ("Microsoft365", "RefreshToken"): "https://outlook.office.com/SMTP.Send offline_access",
    ("Google", "RefreshToken"): "https://mail.google.com/",
}
# Grammar, the same in the CRD. A tenant is a directory ID (GUID) or a verified domain name.
TENANT = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|" + grammar.HOSTNAME
TOKEN_URL = r"https://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[!-~]*)?"
SCOPE = r"[!#-\[\]-~]+( [!#-\[\]-~]+)*"  # RFC 6749 3.3: scope-tokens separated by single spaces
MAX_URL, MAX_SCOPE, MAX_CLIENT_ID, MAX_USERNAME = 2048, 1024, 256, 320


@dataclass(frozen=True)
class OAuth2:
    provider: Provider
    token_url: str
    scope: str  # "" sends none
    client_id: str
    grant: Grant
    secret: str  # the Secret's name: client-secret and/or refresh-token
    username: str  # the SMTP user name in the XOAUTH2 string (the mailbox)


def token_url(provider: str, tenant: str | None, url: str | None) -> str | None:
    if provider == "Microsoft365":
        return MICROSOFT_TOKEN_URL.format(tenant=tenant) if tenant else None
    if provider == "Google":
        return GOOGLE_TOKEN_URL
    return url


def parse_oauth2(check: Checker, raw: Any, path: str = "spec.relay.oauth2") -> OAuth2 | None:
    spec = check.mapping(path, raw, FIELDS)
    if spec is None:
        return None
    before = len(check.problems)
    provider = spec.get("provider")
    if provider not in PROVIDERS:
        check.fail(f"{path}.provider", f"must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    grant = spec.get("grant")
    if grant not in GRANTS:
        check.fail(f"{path}.grant", f"must be one of {', '.join(GRANTS)}, got {grant!r}")
    tenant = _matching(check, f"{path}.tenantID", spec.get("tenantID"), TENANT, "a tenant ID (GUID) or domain", 253)
    url = _matching(check, f"{path}.tokenURL", spec.get("tokenURL"), TOKEN_URL, "an https URL", MAX_URL)
    if url is not None:
        port = url.split("/", 3)[2].rpartition("]")[2].partition(":")[2]
        if port and not 1 <= int(port) <= 65535:
            check.fail(f"{path}.tokenURL", f"port {port} is not from 1 to 65535")
    scope = _matching(check, f"{path}.scope", spec.get("scope"), SCOPE, "a list of scopes", MAX_SCOPE)
    _provider_fields(check, path, spec, provider, grant)
    client_id = check.token(f"{path}.clientID", spec.get("clientID"), "a client ID", MAX_CLIENT_ID)
    username = check.token(f"{path}.username", spec.get("username"), "an SMTP user name", MAX_USERNAME)
    secret = check.secret_ref(f"{path}.secretRef", spec.get("secretRef"))
    if len(check.problems) > before:
        return None
    endpoint = token_url(str(provider), tenant, url)
    assert endpoint is not None and client_id is not None and username is not None and secret is not None
    return OAuth2(
        provider=provider,  # type: ignore[arg-type]  # checked against PROVIDERS above
        token_url=endpoint,
        scope=scope if scope is not None else DEFAULT_SCOPES.get((str(provider), str(grant)), ""),
        client_id=client_id,
        grant=grant,  # type: ignore[arg-type]  # checked against GRANTS above
        secret=secret,
        username=username,
    )


def _provider_fields(check: Checker, path: str, spec: dict[str, Any], provider: Any, grant: Any) -> None:
    """What each provider needs and refuses: a tenant for Microsoft 365, a token URL for Custom only."""
    if spec.get("tenantID") is not None and provider != "Microsoft365":
        check.fail(f"{path}.tenantID", "is only for provider Microsoft365")
    if provider == "Microsoft365" and spec.get("tenantID") is None:
        check.fail(f"{path}.tenantID", "is required for provider Microsoft365 (the directory ID or domain)")
    if spec.get("tokenURL") is not None and provider != "Custom":
        check.fail(f"{path}.tokenURL", "is only for provider Custom (the presets know their endpoint)")
    if provider == "Custom" and spec.get("tokenURL") is None:
        check.fail(f"{path}.tokenURL", "is required for provider Custom")
    if provider == "Google" and grant == "ClientCredentials":
        check.fail(f"{path}.grant", "Google sends Gmail only with a user's refresh token: use RefreshToken")


def _matching(check: Checker, path: str, value: Any, expression: str, what: str, limit: int) -> str | None:
    if value is None:
        return None
    text = check.string(path, value)
    if text is None:
        return None
    if not text or len(text) > limit or not grammar.full(expression, text):
        check.fail(path, f"{text[:80]!r} is not {what} (at most {limit} characters)")
        return None
    return text
