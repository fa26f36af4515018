#!/bin/sh
# Copy Postfix's log file to stdout, so `kubectl logs` shows it, and keep the file bounded.
# Postfix writes the file (not stdout) because the metrics sidecar follows it too. postlogd appends
# (O_APPEND), so truncating in place is safe for the writer; both readers notice the truncation and
# start over. Lines logged in the instant between a reader's last read and the truncation can be
# missed by that reader; this happens once per MAILRELAY_MAILLOG_MAX_BYTES of log.
set -u
MAILLOG=$1
MAX=${MAILRELAY_MAILLOG_MAX_BYTES:-16777216}
CHECK=${MAILRELAY_MAILLOG_CHECK_SECONDS:-10}

tail -n +1 -F "$MAILLOG" 2>/dev/null &
while sleep "$CHECK"; do
    size=$(stat -c %s "$MAILLOG" 2>/dev/null || echo 0)
    if [ "$size" -gt "$MAX" ]; then
        sleep 1  # let both readers catch up before the file starts over
        : >"$MAILLOG"
    fi
done
