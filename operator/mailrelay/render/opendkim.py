"""Everything the project knows about OpenDKIM: its configuration, key table and signing table.

OpenDKIM runs beside Postfix in the relay container as a signing-only milter. The files go into the
ConfigMap next to Postfix's; paths that depend on where the relay runs (the pod, a test, local mode)
are written as RUNTIME_DIR_TOKEN, which the entrypoint replaces with its runtime directory, as
OpenDKIM's configuration has no variables. Keys never appear here: the key table names files that
the entrypoint copies from the Secret, readable by the `opendkim` user alone.
"""

from __future__ import annotations

from mailrelay.api.dkim import KEY_FILES, DkimSpec
from mailrelay.api.spec import MailRelaySpec
from mailrelay.render.headers import KEPT_HEADERS, KEPT_PREFIX

RUNTIME_DIR_TOKEN = "@OPENDKIM_DIR@"
DEFAULT_RUNTIME_DIR = "/run/mailrelay/opendkim"  # entrypoint.sh's default for MAILRELAY_OPENDKIM_DIR
HEADER = "# Rendered by mailrelay-operator; changes are overwritten."


def files(algorithm: str) -> tuple[str, str, str]:
    """The configuration, key table and signing table of the instance signing with `algorithm`."""
    return f"opendkim-{algorithm}.conf", f"opendkim-{algorithm}.keytable", f"opendkim-{algorithm}.signingtable"


def socket_name(algorithm: str) -> str:
    return f"{algorithm}.sock"


KEPT_HEADERS_SCRIPT = "opendkim-kept-headers.lua"
# The kept reply headers are signed with their values as they leave (kept_headers_script), so they
# can be signed, and signed once more than present like From (RFC 6376 8.15): nobody can change or
# add one after signing. Oversigning needs the name in SignHeaders too ("*" keeps the defaults).
SIGNED = ",".join(["*", *(f"+{name}" for name in KEPT_HEADERS)])
OVERSIGNED = ",".join(["From", *KEPT_HEADERS])


def conf(dkim: DkimSpec, algorithm: str) -> str:
    """One OpenDKIM per key: 2.11 signs with one algorithm per process (an RSA key under
    `SignatureAlgorithm ed25519-sha256` gets a=ed25519-sha256 and fails everywhere)."""
    _, key_table_file, signing_table_file = files(algorithm)
    lines = [
        HEADER,
        "Mode s",  # sign only: verifying inbound mail is the receiver's business
        f"Socket local:{RUNTIME_DIR_TOKEN}/{socket_name(algorithm)}",
        "UMask 0000",  # the socket is reached by Postfix; its directory is closed to everyone else
        f"PidFile {RUNTIME_DIR_TOKEN}/{algorithm}.pid",
        "UserID opendkim:opendkim",
        "Background no",
        "Syslog no",  # a container has no syslog; Postfix logs each milter failure itself
        f"SignatureAlgorithm {algorithm}-sha256",
        f"KeyTable file:{RUNTIME_DIR_TOKEN}/{key_table_file}",
        f"SigningTable refile:{RUNTIME_DIR_TOKEN}/{signing_table_file}",
        "Canonicalization relaxed/relaxed",
        f"SignHeaders {SIGNED}",
        f"OversignHeaders {OVERSIGNED}",
        f"SetupPolicyScript {RUNTIME_DIR_TOKEN}/{KEPT_HEADERS_SCRIPT}",
        # Postfix only admits clients from allowedNetworks; whatever reaches the milter is ours to sign.
        "InternalHosts 0.0.0.0/0, ::/0",
        # OpenDKIM refuses a key when any directory above it is world-writable, as a Kubernetes
        # emptyDir (0777) is; the entrypoint makes the key's own directory 0700 and the key 0400,
        # both owned by opendkim, which is the protection that check stands for.
        "RequireSafeKeys no",
        "SoftwareHeader no",
    ]
    return "\n".join(lines) + "\n"


def kept_headers_script() -> str:
    """Lua run by OpenDKIM once the headers are in: sign each kept reply header with its copy's value.

    At signing time Postfix's cleanup has already rewritten, say, Reply-To with the canonical maps,
    and its copy X-Mailrelay-Kept-Reply-To holds what the sender wrote; smtp_header_checks drops the
    first and renames the copy as the message leaves (headers.py). replace_header() changes only what
    the signature is computed over, so the signature covers the Reply-To that leaves. Without a
    sign request here OpenDKIM still signs by its SigningTable.
    """
    names = ", ".join(f'"{name}"' for name in KEPT_HEADERS)
    return (
        "-- Rendered by mailrelay-operator; changes are overwritten.\n"
        f"for _, name in ipairs({{{names}}}) do\n"
        "  local n = 0\n"
        "  while true do\n"
        f'    local kept = odkim.get_header(ctx, "{KEPT_PREFIX}" .. name, n)\n'
        "    if kept == nil then break end\n"
        "    odkim.replace_header(ctx, name, n, kept)\n"
        "    n = n + 1\n"
        "  end\n"
        "end\n"
    )


def key_table(dkim: DkimSpec, algorithm: str) -> str:
    path = f"{RUNTIME_DIR_TOKEN}/keys/{KEY_FILES[algorithm]}"
    return f"{HEADER}\n{algorithm} {dkim.domain}:{dkim.selectors[algorithm]}:{path}\n"


def signing_table(dkim: DkimSpec, algorithm: str) -> str:
    """From addresses in the signing domain or below it are signed; any other From is left alone."""
    return f"{HEADER}\n*@{dkim.domain} {algorithm}\n*@*.{dkim.domain} {algorithm}\n"


def algorithms(spec: MailRelaySpec) -> list[str]:
    """The signing instances, in the order Postfix calls them."""
    return sorted(spec.dkim.selectors, key=lambda a: a != "ed25519") if spec.dkim else []


def config_files(spec: MailRelaySpec) -> dict[str, str]:
    result: dict[str, str] = {KEPT_HEADERS_SCRIPT: kept_headers_script()} if spec.dkim else {}
    for algorithm in algorithms(spec):
        assert spec.dkim is not None
        names = files(algorithm)
        result.update(
            zip(
                names,
                (conf(spec.dkim, algorithm), key_table(spec.dkim, algorithm), signing_table(spec.dkim, algorithm)),
                strict=True,
            )
        )
    return result
