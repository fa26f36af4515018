#!/bin/sh
# The XOAUTH2 relay container (mailrelay.relayd): Debian's python3 runs the package's own copy,
# which image/postfix/Dockerfile puts under /usr/local/lib/mailrelay. Usage: mailrelay-xoauth2 CONFIG.json
set -eu
export PYTHONPATH="${MAILRELAY_PYTHON_LIB:-/usr/local/lib/mailrelay}"
exec python3 -s -m mailrelay.relayd "$@"
