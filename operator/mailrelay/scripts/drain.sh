#!/bin/sh
# preStop hook: no message this relay accepted is lost when the pod goes away.
#  1. Keep accepting for MAILRELAY_ENDPOINT_WAIT_SECONDS while the pod leaves the Service's endpoints:
#     a client that was sent here during that time gets "250 queued", not "connection refused".
#  2. Let open SMTP sessions finish (up to MAILRELAY_SESSION_WAIT_SECONDS), then close the listener:
#     nothing new arrives, and a hand-off through the Service cannot come back to this pod.
#  3. Deliver to the smarthost (or MX) for up to MAILRELAY_DRAIN_SECONDS.
#  4. Hand what is left, deferred mail included, to the relay's other replicas through its Service
#     (MAILRELAY_HANDOFF_TARGET, host:port) for up to MAILRELAY_HANDOFF_SECONDS. The queue files keep
#     their envelope; only the next hop changes, so nothing is rewritten or sent twice here.
#  5. Say how many messages are left, in the log and in the termination message (the operator posts
#     it as an Event), and exit; the kubelet then stops Postfix.
set -u
CONFIG_DIR=${POSTFIX_CONFIG_DIR:-/run/mailrelay/postfix}
QUEUE_DIR=${POSTFIX_QUEUE_DIR:-/var/spool/postfix}
WAIT_SECONDS=${MAILRELAY_ENDPOINT_WAIT_SECONDS:-10}
SESSION_SECONDS=${MAILRELAY_SESSION_WAIT_SECONDS:-5}
DRAIN_SECONDS=${MAILRELAY_DRAIN_SECONDS:-20}
HANDOFF_SECONDS=${MAILRELAY_HANDOFF_SECONDS:-30}
HANDOFF_TARGET=${MAILRELAY_HANDOFF_TARGET:-}
# A relay's replicas take the hand-off in clear text without a login; a ClusterSmarthost's egress
# replicas want TLS and their own hand-off login (its line is in the password map already).
HANDOFF_TLS=${MAILRELAY_HANDOFF_TLS:-none}
HANDOFF_SASL=${MAILRELAY_HANDOFF_SASL:-no}
FLUSH_EVERY=${MAILRELAY_DRAIN_FLUSH_EVERY:-5}
PERSISTENT=${MAILRELAY_QUEUE_PERSISTENT:-}
TERMINATION_LOG=${MAILRELAY_TERMINATION_LOG:-/dev/termination-log}

# In a pod, say what happened in the container's log rather than nowhere.
if [ -z "${MAILRELAY_DRAIN_LOG_HERE:-}" ] && [ -w /proc/1/fd/1 ] && [ "$$" -ne 1 ]; then
    exec >/proc/1/fd/1 2>&1
fi

say() { echo "mailrelay-drain: $*"; }

# Queue files move between these directories while they are listed (deferred <-> active during a
# flush): list them in both orders and count each queue ID once, so none is missed or counted twice.
queued() {
    {
        find "$QUEUE_DIR/maildrop" "$QUEUE_DIR/incoming" "$QUEUE_DIR/active" "$QUEUE_DIR/deferred" -type f -printf '%f\n'
        find "$QUEUE_DIR/deferred" "$QUEUE_DIR/active" "$QUEUE_DIR/incoming" "$QUEUE_DIR/maildrop" -type f -printf '%f\n'
    } 2>/dev/null | sort -u | wc -l
}

# Flush every FLUSH_EVERY seconds until the queue is empty (exit 0) or $1 seconds are spent.
flush_for() {
    elapsed=0
    while :; do
        if [ $((elapsed % FLUSH_EVERY)) -eq 0 ]; then
            postfix -c "$CONFIG_DIR" flush 2>/dev/null || true
        fi
        [ "$(queued)" -eq 0 ] && return 0
        [ "$elapsed" -ge "$1" ] && return 1
        sleep 1
        elapsed=$((elapsed + 1))
    done
}

report() {
    say "$1"
    if [ -n "$TERMINATION_LOG" ] && { [ -w "$TERMINATION_LOG" ] || [ ! -e "$TERMINATION_LOG" ]; }; then
        echo "mailrelay-drain: $1" >"$TERMINATION_LOG" 2>/dev/null || true
    fi
}

if [ "$WAIT_SECONDS" -gt 0 ]; then
    say "accepting mail for ${WAIT_SECONDS}s more while the pod leaves the Service's endpoints"
    sleep "$WAIT_SECONDS"
fi

# Removing a listener ends its smtpd processes, sessions in progress included, so first let the
# sessions clients opened during the wait finish (bounded), then remove every smtpd listener; the
# other services (pickup, qmgr, smtp, ...) keep running.
listeners=$(postconf -c "$CONFIG_DIR" -M | awk '$2 == "inet" && $8 == "smtpd" { print $1 }')
ports=$(for name in $listeners; do port=${name##*:}; [ "$port" = smtp ] && port=25; printf '%04X ' "$port"; done)
sessions() {
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v ports="$ports" '
        BEGIN { n = split(ports, p, " "); for (i = 1; i <= n; i++) want[p[i]] = 1 }
        $4 == "01" { split($2, local, ":"); if (local[2] in want) count++ }
        END { print count + 0 }'
}
waited=0
while [ "$(sessions)" -gt 0 ] && [ "$waited" -lt "$SESSION_SECONDS" ]; do
    sleep 1
    waited=$((waited + 1))
done
for name in $listeners; do
    postconf -c "$CONFIG_DIR" -MX "$name/inet"
done
# A smarthost that drops packets holds a delivery in connect() for smtp_connect_timeout (30 s by
# default), one that stalls in its greeting for smtp_helo_timeout (300 s): longer than the phases
# below, so a message caught in such an attempt would still be in flight when the hand-off ends.
postconf -c "$CONFIG_DIR" -e "smtp_connect_timeout=5s" "smtp_helo_timeout=10s"
postfix -c "$CONFIG_DIR" reload >/dev/null 2>&1 || true
say "SMTP listener closed; delivering the queue for up to ${DRAIN_SECONDS}s"

if flush_for "$DRAIN_SECONDS"; then
    report "queue empty, nothing left"
    exit 0
fi
left=$(queued)

host=${HANDOFF_TARGET%:*}
port=${HANDOFF_TARGET##*:}
# With a persistent queue and nobody at the Service (the only replica rolling), the volume keeps the
# mail for the next pod: waiting out the hand-off time would only make the rollout slower.
# shellcheck disable=SC2016  # expanded by bash
if [ -n "$HANDOFF_TARGET" ] && [ -n "$PERSISTENT" ] \
    && ! timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$host" "$port" 2>/dev/null; then
    why="no other replica answers at $HANDOFF_TARGET"
elif [ -n "$HANDOFF_TARGET" ]; then
    say "$left message(s) still queued: handing them to the other replicas at $HANDOFF_TARGET"
    # The next hop for every queued message becomes the Service. No smarthost login or TLS policy
    # towards a peer (but an egress tier's own); getaddrinfo resolves the Service name with the pod's search path; and a 5xx
    # from a peer (e.g. this pod's address outside its allowedNetworks) defers instead of bouncing.
    # Every replica has the same myhostname (mailFromFQDN), and to port 25 Postfix's SMTP client takes
    # a server that answers EHLO with its own myhostname for a mail loop ("loops back to myself"), so
    # the hand-off would only be deferred until the pod and its queue are gone. This pod hands off
    # under its own name (the pod's, which the kubelet makes the hostname); its listener is closed,
    # so a hand-off cannot come back to it under that name either.
    own=$(postconf -c "$CONFIG_DIR" -h myhostname | tr '[:upper:]' '[:lower:]')
    name=$(uname -n | tr '[:upper:]' '[:lower:]')
    if [ -z "$name" ] || [ "$name" = "$own" ]; then
        name="drain.$own"
    fi
    postconf -c "$CONFIG_DIR" -e "relayhost=[$host]:$port" "smtp_tls_security_level=$HANDOFF_TLS" \
        "smtp_tls_wrappermode=no" "smtp_sasl_auth_enable=$HANDOFF_SASL" "smtp_host_lookup=native" \
        "soft_bounce=yes" "myhostname=$name"
    postfix -c "$CONFIG_DIR" reload >/dev/null 2>&1 || true
    if flush_for "$HANDOFF_SECONDS"; then
        report "$left message(s) handed to the other replicas at $HANDOFF_TARGET; nothing left"
        exit 0
    fi
    left=$(queued)
    why="no other replica took them at $HANDOFF_TARGET within ${HANDOFF_SECONDS}s"
else
    why="no hand-off target is set"
fi
if [ -n "$PERSISTENT" ]; then
    report "$left message(s) left in the queue ($why); they stay on this pod's persistent volume and the next pod that mounts it delivers them"
else
    report "$left message(s) left in the queue ($why); they are lost with this pod's emptyDir"
fi
exit 0
