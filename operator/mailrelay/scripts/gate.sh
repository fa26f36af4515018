#!/bin/sh
# The egress tier's programs (mailrelay.gate): Debian's python3 runs the package's own copy, which
# image/postfix/Dockerfile puts under /usr/local/lib/mailrelay.
# Usage: mailrelay-gate milter HOST:PORT TENANTS.json LINGER | logins build|watch
set -eu
export PYTHONPATH="${MAILRELAY_PYTHON_LIB:-/usr/local/lib/mailrelay}"
exec python3 -s -m mailrelay.gate "$@"
