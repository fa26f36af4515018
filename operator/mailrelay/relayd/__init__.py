"""The relay pod's XOAUTH2 relay: Postfix hands it each message on loopback, it sends it to the smarthost.

Debian 12 has no XOAUTH2 SASL plugin for Postfix, and the project vendors no third-party source, so
a relay whose smarthost wants OAuth2 (Microsoft 365, Google Workspace) routes its smtp transport to
this small server on 127.0.0.1 instead. It opens one smarthost session per Postfix session (TLS,
then AUTH XOAUTH2 with the access token the operator keeps fresh in a file only this container
mounts) and passes every command and every reply through: Postfix hears 250 only after the
smarthost said 250, and the smarthost's own 4xx/5xx otherwise, so Postfix keeps the queue, the
retries, the bounces and the hand-off on drain. Python's standard library only (Debian's python3
in the relay image), and nothing of the operator: see docs/architecture.md.
"""
