#!/bin/sh
# relayhub robot installer (seed 002): pairs this machine with a relayhub
# account and writes Telegraf's configuration for it.
#
#   curl -fsSL https://relay.example.com/install.sh | sh
#
# Needs only sh, curl and sed. RELAYHUB_URL says where the server is (the
# address this script was fetched from, by default); TELEGRAF_CONF where
# the configuration goes; RELAYHUB_TOKEN_FILE where the robot's token is
# kept (beside the configuration, by default). A token kept there from an
# earlier run is used again: a failed run never costs a second pairing.
set -eu

RELAYHUB_URL="${RELAYHUB_URL:-__RELAYHUB_URL__}"
RELAYHUB_URL="${RELAYHUB_URL%/}"
TELEGRAF_CONF="${TELEGRAF_CONF:-/etc/telegraf/telegraf.d/relayhub.conf}"
conf_dir="$(dirname "$TELEGRAF_CONF")"
TOKEN_FILE="${RELAYHUB_TOKEN_FILE:-$conf_dir/relayhub.token}"

say() { printf '%s\n' "$*"; }
fail() { printf 'relayhub: %s\n' "$*" >&2; exit 1; }

# Everything the script needs is checked before it asks for a code: a code
# confirmed and then lost would leave an active robot whose token no one has.
command -v curl >/dev/null 2>&1 || fail "curl is needed (apt-get install curl)"
writable() {
    mkdir -p "$1" 2>/dev/null || return 1
    probe="$1/.relayhub-probe.$$"
    (: > "$probe") 2>/dev/null || return 1
    rm -f "$probe"
}
for dir in "$conf_dir" "$(dirname "$TOKEN_FILE")"; do
    writable "$dir" || fail "cannot write to $dir. Run the installer as root:
    curl -fsSL $RELAYHUB_URL/install.sh | sudo sh
or choose a place you may write: TELEGRAF_CONF=\$HOME/telegraf.d/relayhub.conf sh install.sh"
done
curl -fsS -o /dev/null "$RELAYHUB_URL/healthz" 2>/dev/null ||
    fail "$RELAYHUB_URL does not answer (GET /healthz); set RELAYHUB_URL to the server's address"

# A JSON field of a flat answer: strings and numbers are enough here.
field() {
    printf '%s' "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p"
}

host="$(hostname 2>/dev/null || uname -n)"
case "$(uname -m)" in
    aarch64|arm64|armv8*) arch=arm64 ;;
    x86_64|amd64) arch=amd64 ;;
    armv7*|armv6*|armhf) arch=armhf ;;
    *) arch="" ;;
esac

token=""
if [ -s "$TOKEN_FILE" ]; then
    token="$(cat "$TOKEN_FILE")"
    kept="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Token $token" "$RELAYHUB_URL/api/robot")" || kept=""
    [ "$kept" = 200 ] || fail "the token kept in $TOKEN_FILE is not accepted (HTTP $kept; was the robot deleted?). Remove the file and run the installer again to pair anew."
    say "Using this robot's token kept in $TOKEN_FILE (paired before; remove the file to pair anew)."
else
    body="{\"hostname\":\"$host\""
    [ -n "$arch" ] && body="$body,\"architecture\":\"$arch\""
    body="$body}"
    answer="$(curl -sS -X POST "$RELAYHUB_URL/api/pair" -H 'Content-Type: application/json' -d "$body")" ||
        fail "cannot reach $RELAYHUB_URL"
    code="$(field "$answer" code)"
    secret="$(field "$answer" poll_secret)"
    interval="$(field "$answer" interval)"
    [ -n "$code" ] && [ -n "$secret" ] || fail "the server refused to pair: $answer"
    [ -n "$interval" ] || interval=5

    # The code in letters five lines high, to read across a room.
    glyph() {
        g_row=$2
        case "$1" in
            B) set -- "#### " "#   #" "#### " "#   #" "#### " ;;
            C) set -- " ####" "#    " "#    " "#    " " ####" ;;
            D) set -- "#### " "#   #" "#   #" "#   #" "#### " ;;
            F) set -- "#####" "#    " "#### " "#    " "#    " ;;
            G) set -- " ####" "#    " "#  ##" "#   #" " ####" ;;
            H) set -- "#   #" "#   #" "#####" "#   #" "#   #" ;;
            J) set -- "  ###" "    #" "    #" "#   #" " ### " ;;
            K) set -- "#   #" "#  # " "###  " "#  # " "#   #" ;;
            L) set -- "#    " "#    " "#    " "#    " "#####" ;;
            M) set -- "#   #" "## ##" "# # #" "#   #" "#   #" ;;
            N) set -- "#   #" "##  #" "# # #" "#  ##" "#   #" ;;
            P) set -- "#### " "#   #" "#### " "#    " "#    " ;;
            Q) set -- " ### " "#   #" "# # #" "#  # " " ## #" ;;
            R) set -- "#### " "#   #" "#### " "#  # " "#   #" ;;
            S) set -- " ####" "#    " " ### " "    #" "#### " ;;
            T) set -- "#####" "  #  " "  #  " "  #  " "  #  " ;;
            V) set -- "#   #" "#   #" "#   #" " # # " "  #  " ;;
            W) set -- "#   #" "#   #" "# # #" "## ##" "#   #" ;;
            X) set -- "#   #" " # # " "  #  " " # # " "#   #" ;;
            Z) set -- "#####" "   # " "  #  " " #   " "#####" ;;
            -) set -- "     " "     " " ### " "     " "     " ;;
            *) set -- "     " "     " "     " "     " "     " ;;
        esac
        eval "printf '%s' \"\${$g_row}\""
    }

    banner() {
        for row in 1 2 3 4 5; do
            line=""
            rest="$1"
            while [ -n "$rest" ]; do
                letter="$(printf '%s' "$rest" | cut -c1)"
                rest="$(printf '%s' "$rest" | cut -c2-)"
                line="$line$(glyph "$letter" "$row")  "
            done
            say "    $line"
        done
    }

    say ""
    say "Pair this robot ($host) with your relayhub account."
    say ""
    banner "$code"
    say ""
    say "    Code: $code"
    say ""
    say "Confirm it as a signed-in user of $RELAYHUB_URL, e.g. with an access"
    say "token from POST $RELAYHUB_URL/api/auth/login:"
    say "    curl -X POST -H \"Authorization: Bearer \$ACCESS_TOKEN\" $RELAYHUB_URL/api/pair/$code/confirm"
    say ""
    say "Waiting for the confirmation (the code is valid for 15 minutes)..."

    token=""
    while [ -z "$token" ]; do
        sleep "$interval"
        status_answer="$(curl -sS -w '\n%{http_code}' -H "X-Pair-Secret: $secret" "$RELAYHUB_URL/api/pair/$code/status")" ||
            continue
        http_code="$(printf '%s' "$status_answer" | tail -n 1)"
        status_body="$(printf '%s' "$status_answer" | sed '$d')"
        case "$http_code" in
            200) ;;
            429) interval=$((interval + 5)); continue ;;
            *) fail "the server answered $http_code: $status_body" ;;
        esac
        case "$(field "$status_body" status)" in
            pending) ;;
            confirmed)
                token="$(field "$status_body" token)"
                [ -n "$token" ] || fail "confirmed, but the token went elsewhere: start again"
                ;;
            expired) fail "the code expired; run the installer again" ;;
            *) fail "unexpected answer: $status_body" ;;
        esac
    done
    # Kept before anything else can fail: a rerun uses it and pairs no more.
    (umask 077 && printf '%s\n' "$token" > "$TOKEN_FILE") ||
        fail "paired, but the token could not be kept in $TOKEN_FILE; it is: $token"
    say "The robot's token is kept in $TOKEN_FILE."
fi

umask 077
write_conf() {
cat > "$TELEGRAF_CONF" <<CONF
# Written by relayhub's installer for $host. The token is this robot's own:
# deleting or deactivating the robot in relayhub revokes it.

[agent]
  interval = "10s"
  flush_interval = "10s"

[[outputs.influxdb_v2]]
  urls = ["$RELAYHUB_URL"]
  token = "$token"
  organization = "relayhub"
  bucket = "robots"

[[inputs.cpu]]
  percpu = false
  totalcpu = true
[[inputs.mem]]
[[inputs.disk]]
  ignore_fs = ["tmpfs", "devtmpfs", "overlay", "squashfs"]
[[inputs.net]]
[[inputs.temp]]
[[inputs.system]]

# syslog: forward the system log to Telegraf (rsyslog:
#   *.* @@127.0.0.1:6514;RSYSLOG_SyslogProtocol23Format
# in /etc/rsyslog.d/50-telegraf.conf); fields as seed 002 names them.
[[inputs.syslog]]
  server = "tcp://127.0.0.1:6514"
[[processors.rename]]
  namepass = ["syslog"]
  [[processors.rename.replace]]
    field = "severity"
    dest = "level"
  [[processors.rename.replace]]
    tag = "severity"
    dest = "level"
  [[processors.rename.replace]]
    field = "appname"
    dest = "program"
  [[processors.rename.replace]]
    tag = "appname"
    dest = "program"
CONF
}
write_conf 2>/dev/null ||
    fail "cannot write $TELEGRAF_CONF; the robot's token is safe in $TOKEN_FILE: fix the path and run the installer again (it will not pair again)"

say ""
say "Paired. Telegraf's configuration is in $TELEGRAF_CONF."
say "Next:"
say "    1. install Telegraf if it is not:  https://docs.influxdata.com/telegraf/"
say "    2. forward syslog to it:           echo '*.* @@127.0.0.1:6514;RSYSLOG_SyslogProtocol23Format' | sudo tee /etc/rsyslog.d/50-telegraf.conf && sudo systemctl restart rsyslog"
say "    3. restart it:                     sudo systemctl restart telegraf"
