#!/bin/sh
# Start Postfix in the foreground from the files the operator rendered into the ConfigMap.
# Every path can be moved with an environment variable, so the tests and local mode run this
# very script on a host against a temporary directory.
set -eu

CONFIG_SOURCE=${MAILRELAY_CONFIG_SOURCE:-/etc/mailrelay/config}
SECRET_DIR=${MAILRELAY_SECRET_DIR:-/etc/mailrelay/secret}
CONFIG_DIR=${POSTFIX_CONFIG_DIR:-/run/mailrelay/postfix}
QUEUE_DIR=${POSTFIX_QUEUE_DIR:-/var/spool/postfix}
DATA_DIR=${POSTFIX_DATA_DIR:-/var/lib/postfix}
LISTEN=${MAILRELAY_LISTEN:-}    # host:port for the SMTP listener; empty keeps port 25 on all interfaces
MAILLOG=${MAILRELAY_MAILLOG:-}  # a log file instead of stdout
LOG_ECHO=${MAILRELAY_MAILLOG_ECHO:-}  # with MAILLOG: this command copies the file to stdout and bounds it
DKIM_KEY_DIR=${MAILRELAY_DKIM_KEY_DIR:-/etc/mailrelay/dkim-key}
OPENDKIM_DIR=${MAILRELAY_OPENDKIM_DIR:-/run/mailrelay/opendkim}
XOAUTH2_LISTEN=${MAILRELAY_XOAUTH2_LISTEN:-}  # host:port of the XOAUTH2 relay when not the rendered one (local mode)

die() {
    echo "mailrelay: $*" >&2
    exit 1
}

[ -f "$CONFIG_SOURCE/main.cf" ] || die "no main.cf in $CONFIG_SOURCE: is the ConfigMap mounted?"
[ -f "$CONFIG_SOURCE/master.cf" ] || die "no master.cf in $CONFIG_SOURCE: is the ConfigMap mounted?"

umask 022
mkdir -p "$CONFIG_DIR" "$QUEUE_DIR" "$DATA_DIR"
# The kubelet creates every emptyDir world-writable (0777), and Postfix rightly refuses a queue or
# data directory others can write to: give both the owner and mode Postfix's own layout has.
chmod 0755 "$QUEUE_DIR" "$DATA_DIR"
chown root "$QUEUE_DIR"
chown "$(postconf -c "$CONFIG_SOURCE" -h mail_owner)" "$DATA_DIR"
rm -f "$CONFIG_DIR"/*
for file in "$CONFIG_SOURCE"/*; do
    [ -f "$file" ] && cp "$file" "$CONFIG_DIR/"
done

postconf -c "$CONFIG_DIR" -e "queue_directory=$QUEUE_DIR" "data_directory=$DATA_DIR"
if [ -n "$MAILLOG" ]; then
    postconf -c "$CONFIG_DIR" -e "maillog_file=$MAILLOG" "maillog_file_prefixes=$(dirname "$MAILLOG")"
fi
if [ -n "$LISTEN" ]; then
    postconf -c "$CONFIG_DIR" -MX smtp/inet
    postconf -c "$CONFIG_DIR" -M "$LISTEN/inet=$LISTEN inet n - n - - smtpd"
fi
if [ -n "$XOAUTH2_LISTEN" ] && [ -f "$CONFIG_DIR/xoauth2.json" ]; then
    postconf -c "$CONFIG_DIR" -e "relayhost=[${XOAUTH2_LISTEN%:*}]:${XOAUTH2_LISTEN##*:}"
fi

# The smarthost password map is built here, from the mounted Secret, readable by root only.
# printf is a shell builtin: the password shows up in no argument list, variable export or log.
if [ -n "$(postconf -c "$CONFIG_DIR" -h smtp_sasl_password_maps)" ]; then
    [ -r "$SECRET_DIR/username" ] && [ -r "$SECRET_DIR/password" ] \
        || die "the relay Secret must have the keys username and password (looked in $SECRET_DIR)"
    username=$(cat "$SECRET_DIR/username")
    password=$(cat "$SECRET_DIR/password")
    case "$username" in *:* | *"
"*) die "the relay Secret's username must not contain ':' or a line break" ;; esac
    case "$password" in *"
"*) die "the relay Secret's password must not contain a line break" ;; esac
    umask 077
    printf '%s %s:%s\n' "$(postconf -c "$CONFIG_DIR" -h relayhost)" "$username" "$password" \
        >"$CONFIG_DIR/sasl_passwd"
    unset username password
    umask 022
fi

# DKIM: one OpenDKIM milter per key algorithm. Its files get this run's paths; each key is copied
# from the root-only Secret mount into a directory only the opendkim user can read (not Postfix).
# OpenDKIM stays a child of this process, so of the Postfix master after the exec below; the probe
# checks it is alive, and Postfix tempfails mail while it is not (nothing leaves unsigned).
if ls "$CONFIG_DIR"/opendkim-*.conf >/dev/null 2>&1; then
    rm -rf "$OPENDKIM_DIR"
    mkdir -p "$OPENDKIM_DIR/keys"
    for file in "$CONFIG_DIR"/opendkim-*; do
        sed "s|@OPENDKIM_DIR@|$OPENDKIM_DIR|g" "$file" >"$OPENDKIM_DIR/${file##*/}"
    done
    # A here-document, not a pipe: the loop stays in this shell, so `die` ends the start.
    while read -r key; do
        [ -n "$key" ] || continue
        [ -s "$DKIM_KEY_DIR/${key##*/}" ] || die "the DKIM key Secret has no ${key##*/} (looked in $DKIM_KEY_DIR)"
        install -m 0400 -o opendkim -g opendkim "$DKIM_KEY_DIR/${key##*/}" "$key"
    done <<KEYS
$(awk '!/^#/ { n = split($2, part, ":"); print part[n] }' "$OPENDKIM_DIR"/opendkim-*.keytable)
KEYS
    chown opendkim:opendkim "$OPENDKIM_DIR/keys"
    chmod 0700 "$OPENDKIM_DIR/keys"
    chown "opendkim:$(id -gn "$(postconf -c "$CONFIG_DIR" -h mail_owner)")" "$OPENDKIM_DIR"
    chmod 0750 "$OPENDKIM_DIR"
    for conf in "$OPENDKIM_DIR"/opendkim-*.conf; do
        opendkim -x "$conf" -f &
        socket=$(awk '$1 == "Socket" { sub(/^local:/, "", $2); print $2 }' "$conf")
        tries=0
        until [ -S "$socket" ]; do
            kill -0 $! 2>/dev/null || die "OpenDKIM ($conf) did not start (see its messages above)"
            tries=$((tries + 1))
            [ "$tries" -le 100 ] || die "OpenDKIM ($conf) did not open its socket within 10 seconds"
            sleep 0.1
        done
        echo "mailrelay: OpenDKIM signs as $(awk '!/^#/ { print $2 }' "${conf%.conf}.keytable")"
    done
    postconf -c "$CONFIG_DIR" -e "mailrelay_opendkim_dir=$OPENDKIM_DIR"
fi

# Postfix only warns about a broken map line and then skips it; for a relay that rewrites senders
# a skipped line means wrong mail, so any warning from the checks below stops the start.
problems=$(
    {
        postfix -c "$CONFIG_DIR" check 2>&1 || echo "postfix check failed"
        # The maps, and the recipient allow-list among the restrictions (the words with a ':').
        for map in $(postconf -c "$CONFIG_DIR" -xh sender_canonical_maps canonical_maps header_checks \
            smtp_header_checks smtpd_recipient_restrictions | tr ',' ' '); do
            case $map in
            *:*) postmap -c "$CONFIG_DIR" -q probe@mailrelay.invalid "$map" 2>&1 >/dev/null || true ;;
            esac
        done
    } | grep -E 'warning|fatal|error|failed' || true
)
[ -z "$problems" ] || die "the configuration is not usable:
$problems"

if [ -n "$MAILLOG" ] && [ -n "$LOG_ECHO" ]; then
    mkdir -p "$(dirname "$MAILLOG")"
    touch "$MAILLOG"
    "$LOG_ECHO" "$MAILLOG" &  # outlives this shell: it becomes a child of Postfix's master
fi

echo "mailrelay: starting Postfix $(postconf -c "$CONFIG_DIR" -dh mail_version) for $(postconf -c "$CONFIG_DIR" -h myorigin)"
exec postfix -c "$CONFIG_DIR" start-fg
