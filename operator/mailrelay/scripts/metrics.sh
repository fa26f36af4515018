#!/bin/sh
# The relay's metrics sidecar: Debian's prometheus-postfix-exporter, reading the queue through
# Postfix's showq socket and following the log file the relay container writes (its stdout copy is
# what `kubectl logs` shows). Waits for both to exist, so a sidecar that starts first does not crash.
set -eu

QUEUE_DIR=${POSTFIX_QUEUE_DIR:-/var/spool/postfix}
MAILLOG=${MAILRELAY_MAILLOG:-/var/log/mailrelay/maillog}
LISTEN=${MAILRELAY_METRICS_LISTEN:-:9154}
WAIT=${MAILRELAY_METRICS_WAIT_SECONDS:-120}

waited=0
until [ -e "$MAILLOG" ] && [ -S "$QUEUE_DIR/public/showq" ]; do
    if [ "$waited" -ge "$WAIT" ]; then
        echo "mailrelay-metrics: no Postfix log at $MAILLOG or showq socket in $QUEUE_DIR/public after ${WAIT}s" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done

exec prometheus-postfix-exporter \
    --web.listen-address="$LISTEN" \
    --postfix.showq_path="$QUEUE_DIR/public/showq" \
    --postfix.logfile_path="$MAILLOG"
