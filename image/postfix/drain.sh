#!/bin/sh
# preStop hook: deliver what can still be delivered before the pod goes away. Flushes the queue,
# then waits until it is empty or the drain time (kept below the grace period) is spent.
set -u
CONFIG_DIR=${POSTFIX_CONFIG_DIR:-/run/mailrelay/postfix}
QUEUE_DIR=${POSTFIX_QUEUE_DIR:-/var/spool/postfix}
SECONDS_LEFT=${MAILRELAY_DRAIN_SECONDS:-50}
FLUSH_EVERY=${MAILRELAY_DRAIN_FLUSH_EVERY:-10}

# In a pod, say what happened in the container's log rather than nowhere.
if [ -z "${MAILRELAY_DRAIN_LOG_HERE:-}" ] && [ -w /proc/1/fd/1 ] && [ "$$" -ne 1 ]; then
    exec >/proc/1/fd/1 2>&1
fi

queued() {
    find "$QUEUE_DIR/maildrop" "$QUEUE_DIR/incoming" "$QUEUE_DIR/active" "$QUEUE_DIR/deferred" \
        -type f 2>/dev/null | wc -l
}

elapsed=0
while :; do
    if [ $((elapsed % FLUSH_EVERY)) -eq 0 ]; then
        postfix -c "$CONFIG_DIR" flush 2>/dev/null || true
    fi
    count=$(queued)
    if [ "$count" -eq 0 ]; then
        echo "mailrelay-drain: queue empty after ${elapsed}s"
        exit 0
    fi
    if [ "$elapsed" -ge "$SECONDS_LEFT" ]; then
        echo "mailrelay-drain: $count message(s) still queued after ${elapsed}s; they go with this pod"
        exit 0
    fi
    sleep 1
    elapsed=$((elapsed + 1))
done
