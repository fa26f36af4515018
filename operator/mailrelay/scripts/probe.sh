#!/bin/bash
# Kubernetes probe for the relay. `live`: the master runs and smtpd answers EHLO in time (a banner
# alone is sent before a hung cleanup or queue manager would show). `ready`: Postfix also takes a
# sender, which needs the cleanup service, so the pod only gets traffic once it can queue mail.
set -u
mode=${1:-live}
CONFIG_DIR=${POSTFIX_CONFIG_DIR:-/run/mailrelay/postfix}
ADDRESS=${MAILRELAY_PROBE_ADDRESS:-127.0.0.1}
PORT=${MAILRELAY_PROBE_PORT:-25}
TIMEOUT=${MAILRELAY_PROBE_TIMEOUT:-5}
OPENDKIM_DIR=${MAILRELAY_OPENDKIM_DIR:-/run/mailrelay/opendkim}

case "$mode" in live | ready) ;; *) echo "usage: $0 live|ready" >&2; exit 2 ;; esac

if ! postfix -c "$CONFIG_DIR" status >/dev/null 2>&1; then
    echo "mailrelay-probe: the Postfix master is not running" >&2
    exit 1
fi

# With DKIM, a dead OpenDKIM means tempfailed mail: the probes fail, so the kubelet restarts the container.
for conf in "$CONFIG_DIR"/opendkim-*.conf; do
    [ -f "$conf" ] || continue
    name=${conf##*/opendkim-}
    if ! kill -0 "$(cat "$OPENDKIM_DIR/${name%.conf}.pid" 2>/dev/null)" 2>/dev/null; then
        echo "mailrelay-probe: OpenDKIM (${name%.conf}) is not running" >&2
        exit 1
    fi
done

# shellcheck disable=SC2016  # expanded by the inner bash
timeout "$TIMEOUT" bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    expect() {  # read one (possibly multi-line) reply and check its code
        local line
        while IFS= read -r line <&3; do
            line=${line%$'"'"'\r'"'"'}
            case "$line" in "$1"-*) continue ;; "$1"" "* | "$1") return 0 ;; *) echo "$line" >&2; return 1 ;; esac
        done
        return 1
    }
    expect 220 || exit 1
    printf "EHLO mailrelay-probe\r\n" >&3; expect 250 || exit 1
    if [ "$3" = ready ]; then
        printf "MAIL FROM:<>\r\n" >&3; expect 250 || exit 1
        printf "RSET\r\n" >&3; expect 250 || exit 1
    fi
    printf "QUIT\r\n" >&3; expect 221 || true
' mailrelay-probe "$ADDRESS" "$PORT" "$mode"
status=$?
if [ "$status" -ne 0 ]; then
    echo "mailrelay-probe: SMTP on $ADDRESS:$PORT did not answer ($mode, status $status)" >&2
    exit 1
fi
