"""The reply headers a relay keeps as the sender wrote them, shared by Postfix's and OpenDKIM's files.

Postfix's cleanup rewrites every header of its sender class (From, Sender, ..., Reply-To too) with
the canonical maps, and these say where answers go, not who sent. So header_checks puts a copy of
each under KEPT_PREFIX in front of it before the maps run, the signer signs the header with the
copy's value (opendkim.kept_headers_script), and smtp_header_checks drops the rewritten one and
gives the copy its name back as the message leaves: what leaves is what was signed.
"""

from __future__ import annotations

KEPT_HEADERS = ("Reply-To", "Errors-To", "Disposition-Notification-To", "Mail-Followup-To", "Resent-Reply-To")
KEPT_PREFIX = "X-Mailrelay-Kept-"
