"""The egress tier's own programs: the sender gate (a milter) and the tenant logins it serves.

A ClusterSmarthost's egress tier is a Postfix that tenant relays log in to, each with a login the
operator derives for it (`tenants`). Postfix itself ties each login to its sender domains for the
envelope (smtpd_sender_login_maps with reject_sender_login_mismatch); this package adds what
Postfix cannot do per login: the header senders (From, Sender, Resent-From, Resent-Sender) must be
within the same domains, and each namespace's rate limits (`policy`, spoken as a milter by
`milter`). `logins` builds Cyrus SASL's sasldb from the tenant list and reloads Postfix when the
list changes. Python's standard library only (Debian's python3 in the relay image), and nothing of
the operator but the one document format both sides share: see docs/architecture.md.
"""
