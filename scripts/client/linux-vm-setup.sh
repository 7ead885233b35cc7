#!/usr/bin/env bash
# Points a Linux VM of the virtual network at the egressgate proxy VM, and checks the route.
#
#   linux-vm-setup.sh --proxy HOST:PORT [--root DIR] [--dry-run] [--no-check]
#                     [--check-url URL] [--ca-file FILE]
#   linux-vm-setup.sh --undo [--root DIR] [--dry-run]
#
# What it sets (see scripts/client/README.md for the reasons):
#   /etc/waagent.conf       HttpProxy.Host / HttpProxy.Port (WALinuxAgent ignores the proxy unless
#                           both are set); a commented, stale or duplicated line is replaced in
#                           place, a missing one appended; every other line is kept byte for byte.
#   /etc/environment        http_proxy, https_proxy, no_proxy and their upper-case forms, for
#                           login sessions (pam_env); other lines are kept.
#   /etc/systemd/system/<agent>.service.d/egressgate-proxy.conf
#                           the same variables as Environment= lines: systemd services do not read
#                           /etc/environment, and the agent passes its environment to extensions
#                           (VM backup among them). <agent> is walinuxagent on Debian/Ubuntu,
#                           waagent elsewhere.
# no_proxy is always this fixed list: 168.63.129.16 (WireServer), 169.254.169.254 (IMDS),
# localhost, 127.0.0.1, ::1. Through the proxy those would answer as the proxy VM, or be refused.
#
# The originals are kept under /var/lib/egressgate-client/backup before the first change;
# --undo puts them back byte for byte and removes what did not exist before.
# A second run with the same arguments rewrites nothing and says "already configured".
#
# Exit status: 0 configured (and the route check passed or was skipped), 1 the route check failed
# (the settings are applied all the same) or a step failed, 2 usage error.
set -euo pipefail

PROG=${0##*/}
NO_PROXY_LIST="168.63.129.16,169.254.169.254,localhost,127.0.0.1,::1"
# Always resolves (the global Entra ID endpoint), answers any HTTPS GET, is in the built-in
# azure-backup catalog, and is a destination the backup extension needs anyway. A blob host of a
# fixed storage account would resolve only while that account exists and pass an outbound NSG rule
# limited to Storage.<region> only in that account's region: pass your vault region's account
# with --check-url to check the storage path itself.
DEFAULT_CHECK_URL="https://login.microsoftonline.com/"
DROPIN_NAME="egressgate-proxy.conf"
STATE_REL="var/lib/egressgate-client"
WAAGENT_REL="etc/waagent.conf"
ENVIRONMENT_REL="etc/environment"
CHECK_CONNECT_TIMEOUT=10 # seconds; WALinuxAgent itself gives up after 10 s
CHECK_MAX_TIME=30

usage() {
    cat <<EOF
usage: $PROG --proxy HOST:PORT [--root DIR] [--dry-run] [--no-check] [--check-url URL] [--ca-file FILE]
       $PROG --undo [--root DIR] [--dry-run]

  --proxy HOST:PORT  the egressgate listener: an IPv4 address, [IPv6] or a DNS name, and a port
  --root DIR         edit the files under DIR instead of / (no systemctl; for images and tests)
  --dry-run          print a unified diff of every change and change nothing
  --undo             restore the files as they were before the first run, remove the drop-in
  --check-url URL    https URL to fetch through the proxy (default $DEFAULT_CHECK_URL)
  --ca-file FILE     CA certificates curl trusts for the check (default: the system store)
  --no-check         do not check the route
EOF
}

die() { # message
    printf '%s: %s\n' "$PROG" "$1" >&2
    exit 1
}

usage_error() { # message
    printf '%s: %s\n' "$PROG" "$1" >&2
    printf "Try '%s --help'.\n" "$PROG" >&2
    exit 2
}

say() { printf '%s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# Arguments

PROXY=""
ROOT="/"
DRY_RUN=0
UNDO=0
CHECK=1
CHECK_URL="$DEFAULT_CHECK_URL"
CA_FILE=""

need_value() { # option remaining-count
    [ "$2" -ge 2 ] || usage_error "$1 needs a value"
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --proxy) need_value "$1" "$#"; PROXY=$2; shift 2 ;;
        --proxy=*) PROXY=${1#*=}; shift ;;
        --root) need_value "$1" "$#"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --check-url) need_value "$1" "$#"; CHECK_URL=$2; shift 2 ;;
        --check-url=*) CHECK_URL=${1#*=}; shift ;;
        --ca-file) need_value "$1" "$#"; CA_FILE=$2; shift 2 ;;
        --ca-file=*) CA_FILE=${1#*=}; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --undo) UNDO=1; shift ;;
        --no-check) CHECK=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown argument '$1'" ;;
    esac
done

valid_ipv4() { # address
    local IFS=. octets octet
    # shellcheck disable=SC2206 # splitting on dots is the point
    octets=($1)
    [ "${#octets[@]}" -eq 4 ] || return 1
    [[ $1 != *. ]] || return 1
    for octet in "${octets[@]}"; do
        [[ $octet =~ ^(0|[1-9][0-9]{0,2})$ ]] || return 1
        [ "$octet" -le 255 ] || return 1
    done
}

valid_ipv6() { # address without brackets; no zone index
    local addr=$1 groups=0 group rest
    [[ $addr =~ ^[0-9A-Fa-f:.]+$ ]] || return 1
    [[ $addr == *:*:* ]] || return 1
    # an embedded IPv4 address may end it (::ffff:10.0.0.5)
    if [[ $addr == *.* ]]; then
        valid_ipv4 "${addr##*:}" || return 1
        addr="${addr%:*}:0:0"
    fi
    case "$addr" in *::*::* | *:::*) return 1 ;; esac
    case "$addr" in ::*) ;; :*) return 1 ;; esac
    case "$addr" in *::) ;; *:) return 1 ;; esac
    rest=${addr//::/:}
    rest=${rest#:}
    rest=${rest%:}
    local IFS=:
    for group in $rest; do
        [[ $group =~ ^[0-9A-Fa-f]{1,4}$ ]] || return 1
        groups=$((groups + 1))
    done
    if [[ $addr == *::* ]]; then [ "$groups" -le 7 ]; else [ "$groups" -eq 8 ]; fi
}

valid_dns_name() { # name
    local name=$1 label
    [ "${#name}" -le 253 ] || return 1
    [[ $name =~ ^[A-Za-z0-9.-]+$ ]] || return 1
    [[ $name != .* && $name != *. && $name != *..* ]] || return 1
    local IFS=.
    for label in $name; do
        [[ $label =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$ ]] || return 1
    done
    # all-numeric last label: a mistyped IPv4 address, not a name
    [[ ! ${name##*.} =~ ^[0-9]+$ ]]
}

# Sets PROXY_HOST (bare, for waagent.conf), PROXY_PORT and PROXY_URL (http://host:port, IPv6 in
# brackets) from --proxy, or exits 2 saying what is wrong with it.
parse_proxy() { # value
    local value=$1 host port bad="--proxy '$1'"
    [ -n "$value" ] || usage_error "--proxy is required: the egressgate listener as HOST:PORT (e.g. 10.0.0.5:3128)"
    case "$value" in
        *://*) usage_error "$bad: give HOST:PORT without a scheme (e.g. ${value#*://})" ;;
    esac
    if [[ $value == \[* ]]; then
        [[ $value =~ ^\[([^]]*)\]:([^:]*)$ ]] ||
            usage_error "$bad: expected [IPV6]:PORT"
        host=${BASH_REMATCH[1]}
        port=${BASH_REMATCH[2]}
        valid_ipv6 "$host" || usage_error "$bad: '$host' is not an IPv6 address"
        PROXY_URL="http://[$host]:$port"
    else
        case "$value" in
            *:*:*) usage_error "$bad: put an IPv6 address in brackets: [ADDRESS]:PORT" ;;
            *:*) ;;
            *) usage_error "$bad: no port: expected HOST:PORT (egressgate listens on 3128 by default)" ;;
        esac
        host=${value%:*}
        port=${value##*:}
        [ -n "$host" ] || usage_error "$bad: no host before ':'"
        if [[ $host =~ ^[0-9.]+$ ]]; then
            valid_ipv4 "$host" || usage_error "$bad: '$host' is not an IPv4 address"
        else
            valid_dns_name "$host" || usage_error "$bad: '$host' is neither an IP address nor a DNS name"
        fi
        PROXY_URL="http://$host:$port"
    fi
    if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || [ "$port" -gt 65535 ]; then
        usage_error "$bad: port '$port' is not a number from 1 to 65535"
    fi
    PROXY_HOST=$host
    PROXY_PORT=$port
}

if [ "$UNDO" -eq 1 ]; then
    [ -z "$PROXY" ] || usage_error "--undo takes no --proxy: it restores what was there before"
else
    parse_proxy "$PROXY"
    if [ "$CHECK" -eq 1 ]; then
        [[ $CHECK_URL =~ ^https://[^/?#[:space:]]+([/?#][^[:space:]]*)?$ ]] ||
            usage_error "--check-url '$CHECK_URL': expected an https:// URL (the agent's traffic to storage is HTTPS)"
        if [ -n "$CA_FILE" ] && [ ! -r "$CA_FILE" ]; then
            usage_error "--ca-file '$CA_FILE': cannot read it"
        fi
    fi
fi

[ -n "$ROOT" ] || usage_error "--root needs a directory"
[ -d "$ROOT" ] || usage_error "--root '$ROOT': no such directory"
ROOT=$(cd "$ROOT" && pwd -P)
LIVE=0 # editing the running system (systemctl applies)
[ "$ROOT" = "/" ] && LIVE=1
if [ "$LIVE" -eq 1 ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "editing /etc needs root: run it with sudo (or try --dry-run)"
fi

path_of() { # path relative to the root
    printf '%s/%s' "${ROOT%/}" "$1"
}

STATE=$(path_of "$STATE_REL")
BACKUP="$STATE/backup"
CREATED_DIRS="$STATE/created-dirs"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/egressgate-client.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------------
# Files: compare, show, back up, write

CHANGED=0

show_diff() { # relative-path old-file-or-/dev/null new-file-or-/dev/null
    diff -u --label "a/$1" --label "b/$1" "$2" "$3" || true
}

# Creates directory (absolute) and its missing parents; prints those it created, outermost
# first, relative to the root.
make_dirs() { # directory
    local dir=$1 missing=()
    while [ ! -d "$dir" ]; do
        missing=("$dir" "${missing[@]}")
        dir=$(dirname "$dir")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    mkdir -p "$1"
    for dir in "${missing[@]}"; do
        printf '%s\n' "${dir#"${ROOT%/}"/}"
    done
}

ensure_state() {
    [ -d "$BACKUP" ] && return 0
    local created
    created=$(make_dirs "$BACKUP")
    chmod 700 "$STATE"
    [ -z "$created" ] || printf '%s\n' "$created" >>"$CREATED_DIRS"
}

# Keeps the original of a file once, before the first change to it: a copy (mode, owner and
# mtime kept), or a marker saying it did not exist.
backup_once() { # relative-path
    local rel=$1 dest
    dest=$(path_of "$rel")
    ensure_state
    if [ -e "$BACKUP/$rel" ] || [ -e "$BACKUP/$rel.absent" ]; then
        return 0
    fi
    mkdir -p "$(dirname "$BACKUP/$rel")"
    if [ -e "$dest" ]; then
        cp -p "$dest" "$BACKUP/$rel"
    else
        : >"$BACKUP/$rel.absent"
    fi
}

# Replaces dest with the bytes of src in one rename, keeping dest's mode and owner.
write_atomically() { # src dest
    local src=$1 dest=$2 tmp
    tmp=$(mktemp "$(dirname "$dest")/.egressgate.XXXXXX")
    cat "$src" >"$tmp"
    if [ -e "$dest" ]; then
        chmod --reference="$dest" "$tmp"
        chown --reference="$dest" "$tmp" 2>/dev/null || true
    else
        chmod 644 "$tmp"
    fi
    mv -f "$tmp" "$dest"
}

# Puts the wanted content in place unless it is already there.
install_file() { # relative-path wanted-content-file
    local rel=$1 wanted=$2 dest created
    dest=$(path_of "$rel")
    if [ -f "$dest" ] && cmp -s "$wanted" "$dest"; then
        say "$dest: already configured"
        return 0
    fi
    CHANGED=1
    if [ "$DRY_RUN" -eq 1 ]; then
        if [ -e "$dest" ]; then show_diff "$rel" "$dest" "$wanted"; else show_diff "$rel" /dev/null "$wanted"; fi
        return 0
    fi
    backup_once "$rel"
    created=$(make_dirs "$(dirname "$dest")")
    [ -z "$created" ] || printf '%s\n' "$created" >>"$CREATED_DIRS"
    write_atomically "$wanted" "$dest"
    say "$dest: updated"
}

# awk prints every line with a newline; put back a missing final newline of the original when
# nothing was appended after it.
keep_final_newline() { # original result appended-flag-file
    if [ -s "$1" ] && [ "$(tail -c 1 "$1" | wc -l)" -eq 0 ] && [ ! -s "$3" ]; then
        truncate -s -1 "$2"
    fi
}

# ---------------------------------------------------------------------------------------------
# The three files

# waagent.conf: the agent reads key=value lines not starting with '#' and the last one wins.
# The first active line of a key (else its first commented-out line) becomes the new value; later
# active lines of that key go; commented-out ones that are not replaced stay, as comments.
wanted_waagent_conf() { # original output
    : >"$WORK/appended"
    awk -v host="$PROXY_HOST" -v port="$PROXY_PORT" -v appended="$WORK/appended" '
        function active(line, key) { return line ~ ("^[ \t]*" key "[ \t]*=") }
        function commented(line, key) { return line ~ ("^[ \t]*#[ \t]*" key "[ \t]*=") }
        NR == FNR {
            if (active($0, "HttpProxy[.]Host")) { if (!host_active) host_active = FNR }
            else if (commented($0, "HttpProxy[.]Host")) { if (!host_commented) host_commented = FNR }
            if (active($0, "HttpProxy[.]Port")) { if (!port_active) port_active = FNR }
            else if (commented($0, "HttpProxy[.]Port")) { if (!port_commented) port_commented = FNR }
            next
        }
        FNR == 1 {
            host_line = host_active ? host_active : host_commented
            port_line = port_active ? port_active : port_commented
        }
        FNR == host_line { print "HttpProxy.Host=" host; next }
        FNR == port_line { print "HttpProxy.Port=" port; next }
        active($0, "HttpProxy[.]Host") || active($0, "HttpProxy[.]Port") { next }
        { print }
        END {
            if (!host_active && !host_commented) { print "HttpProxy.Host=" host; print 1 > appended }
            if (!port_active && !port_commented) { print "HttpProxy.Port=" port; print 1 > appended }
        }' "$1" "$1" >"$2"
    keep_final_newline "$1" "$2" "$WORK/appended"
}

# /etc/environment (pam_env: NAME=value, optionally "export NAME=value"): the first line of each
# variable gets the new value, later lines of it go, missing ones are appended; comments stay.
wanted_environment() { # original output
    : >"$WORK/appended"
    awk -v proxy="$PROXY_URL" -v no_proxy="$NO_PROXY_LIST" -v appended="$WORK/appended" '
        BEGIN {
            n = split("http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY", names, " ")
            for (i = 1; i <= n; i++) value[i] = (tolower(names[i]) == "no_proxy") ? no_proxy : proxy
        }
        function which(line,   i) {
            for (i = 1; i <= n; i++)
                if (line ~ ("^[ \t]*(export[ \t]+)?" names[i] "[ \t]*=")) return i
            return 0
        }
        NR == FNR { i = which($0); if (i && !first[i]) first[i] = FNR; next }
        {
            i = which($0)
            if (!i) print
            else if (FNR == first[i]) print names[i] "=" value[i]
        }
        END {
            for (i = 1; i <= n; i++)
                if (!first[i]) { print names[i] "=" value[i]; print 1 > appended }
        }' "$1" "$1" >"$2"
    keep_final_newline "$1" "$2" "$WORK/appended"
}

wanted_dropin() { # output
    {
        printf '%s\n' \
            "# Written by egressgate's scripts/client/linux-vm-setup.sh; '--undo' removes it." \
            "# systemd services do not read /etc/environment: the agent, and the extensions it starts" \
            "# (VM backup among them), take the proxy from here." \
            "[Service]"
        local name value
        for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
            case "$name" in no_proxy | NO_PROXY) value=$NO_PROXY_LIST ;; *) value=$PROXY_URL ;; esac
            printf 'Environment="%s=%s"\n' "$name" "$value"
        done
    } >"$1"
}

# walinuxagent on Debian and Ubuntu (and what derives from them), waagent elsewhere; a unit file
# that exists under only one of the two names decides over os-release.
agent_unit() {
    local name dir found=() id="" id_like="" os_release
    for name in walinuxagent waagent; do
        for dir in etc/systemd/system lib/systemd/system usr/lib/systemd/system; do
            if [ -f "$(path_of "$dir/$name.service")" ]; then
                found+=("$name")
                break
            fi
        done
    done
    if [ "${#found[@]}" -eq 1 ]; then
        printf '%s' "${found[0]}"
        return 0
    fi
    for os_release in etc/os-release usr/lib/os-release; do
        os_release=$(path_of "$os_release")
        if [ -f "$os_release" ]; then
            id=$(sed -n 's/^ID=//p' "$os_release" | tr -d "\"'" | head -n 1)
            id_like=$(sed -n 's/^ID_LIKE=//p' "$os_release" | tr -d "\"'" | head -n 1)
            break
        fi
    done
    case " $id $id_like " in
        *" debian "* | *" ubuntu "*) printf 'walinuxagent' ;;
        *) printf 'waagent' ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# systemd

systemd_apply() { # unit what-changed
    local unit=$1
    if [ "$LIVE" -eq 0 ]; then
        say "not under /: the agent is not restarted (run 'systemctl daemon-reload' and 'systemctl restart $unit' on the VM)"
        return 0
    fi
    if [ "$DRY_RUN" -eq 1 ]; then
        say "would run: systemctl daemon-reload; systemctl try-restart $unit.service"
        return 0
    fi
    if ! command -v systemctl >/dev/null 2>&1 || [ ! -d /run/systemd/system ]; then
        say "systemd is not running here: restart the agent ($unit) yourself so that it reads the new settings"
        return 0
    fi
    say "running: systemctl daemon-reload; systemctl try-restart $unit.service (the agent reads the proxy settings at start)"
    systemctl daemon-reload
    systemctl try-restart "$unit.service" || die "systemctl try-restart $unit.service failed: see 'journalctl -u $unit'"
}

# ---------------------------------------------------------------------------------------------
# The route check

explain_refusal() { # reason
    local reason=$1
    if [ -z "$reason" ]; then
        say "  The answer has no X-Egressgate-Reason header: something other than egressgate answered"
        say "  (another proxy on that address, or a middlebox). Is $PROXY_HOST:$PROXY_PORT the egressgate listener?"
        return 0
    fi
    say "  egressgate's reason: $reason"
    case "$reason" in
        host_not_allowed | sni_not_allowed)
            say "  The proxy does not allow this host: add it to [egress] hosts or catalogs on the proxy VM," \
                "or check a host it allows." ;;
        port_not_allowed)
            say "  The port is not in [egress] ports on the proxy VM." ;;
        destination_address_denied | ip_literal_not_allowed | imds)
            say "  The destination address is one the proxy never reaches unless [egress] allow_addresses says so." ;;
        client_connection_limit | client_rate_limit)
            say "  This VM is over its share ([clients] limits on the proxy VM); try again, or raise them." ;;
        resolve_failed | resolve_timeout)
            say "  The proxy VM could not resolve the name: check its DNS ([dns] servers, or the VNet's DNS)." ;;
        connect_failed | connect_timeout)
            say "  The proxy VM could not reach the destination: does the outbound NSG rule let the proxy VM" \
                "out (Internet, or the Storage.<region> and AzureActiveDirectory service tags)?" ;;
        upstream_failed | upstream_timeout | upstream_malformed)
            say "  The destination failed the proxy: try again; if it persists, check the proxy VM's outbound path." ;;
        proxy_connection_limit | resource_exhausted)
            say "  The proxy itself is out of room ([proxy] max_connections, descriptors): see its /metrics." ;;
        *)
            say "  See the audit trail on the proxy VM (reason $reason) for this VM's request." ;;
    esac
}

check_route() {
    local out rc connect_code http_code reason stderr_text target
    target=$CHECK_URL
    say "checking the route: $target through $PROXY_URL"
    if ! command -v curl >/dev/null 2>&1; then
        say "route check FAILED: curl is not installed (install it, or pass --no-check)"
        return 1
    fi
    local args=(-q -sS -o /dev/null -D "$WORK/check-headers" -w '%{http_connect} %{http_code}'
        --proxy "$PROXY_URL" --connect-timeout "$CHECK_CONNECT_TIMEOUT" --max-time "$CHECK_MAX_TIME")
    [ -z "$CA_FILE" ] || args+=(--cacert "$CA_FILE")
    : >"$WORK/check-headers"
    set +e
    # no_proxy in this shell (or the file just written) must not send the check around the proxy
    out=$(env -u no_proxy -u NO_PROXY -u http_proxy -u https_proxy -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
        curl "${args[@]}" "$target" 2>"$WORK/check-stderr")
    rc=$?
    set -e
    connect_code=${out%% *}
    http_code=${out##* }
    stderr_text=$(head -n 1 "$WORK/check-stderr" 2>/dev/null || true)
    reason=$(tr -d '\r' <"$WORK/check-headers" 2>/dev/null | grep -i '^x-egressgate-reason:' |
        head -n 1 | sed 's/^[^:]*:[[:space:]]*//' || true)

    if [ "$connect_code" = "200" ] && [ "$rc" -eq 0 ]; then
        say "route check OK: the proxy opened the tunnel (200) and the destination answered HTTP $http_code"
        return 0
    fi
    say "route check FAILED (curl exit $rc${stderr_text:+: $stderr_text})"
    case "$connect_code" in
        200)
            case "$rc" in
                28) say "  The proxy opened the tunnel but the destination did not answer within ${CHECK_MAX_TIME}s." ;;
                35 | 51 | 53 | 54 | 58 | 59 | 60 | 66 | 77 | 80 | 83 | 90 | 91)
                    say "  The proxy opened the tunnel, but TLS with the destination failed. egressgate never"
                    say "  decrypts; if a certificate of another issuer came back, something on the way inspects"
                    say "  TLS, which Azure Backup does not support (or pass the right CA with --ca-file)." ;;
                *) say "  The proxy opened the tunnel; the exchange with the destination failed after that." ;;
            esac ;;
        403 | 429 | 502 | 503 | 504)
            case "$connect_code" in
                403) say "  The proxy refused the request (403)." ;;
                429) say "  The proxy refused the request (429: too many from this VM)." ;;
                502 | 504) say "  The proxy could not reach the destination ($connect_code)." ;;
                503) say "  The proxy is out of room (503)." ;;
            esac
            explain_refusal "$reason" ;;
        407)
            say "  407: that proxy wants authentication; egressgate never does. Is $PROXY_HOST:$PROXY_PORT egressgate?" ;;
        000 | "")
            case "$rc" in
                5) say "  The proxy name $PROXY_HOST does not resolve on this VM: use its address, or fix DNS." ;;
                7) say "  Could not connect to the proxy at $PROXY_HOST:$PROXY_PORT: is egressgate running and"
                   say "  listening there, and does the proxy VM's NSG let VirtualNetwork in on port $PROXY_PORT?" ;;
                28) say "  No answer from the proxy at $PROXY_HOST:$PROXY_PORT within the time: an NSG or a firewall"
                    say "  dropping the packets between this VM and the proxy VM?" ;;
                52 | 55 | 56)
                    say "  The proxy closed the connection without an answer: is this VM's address in [clients] allow"
                    say "  on the proxy VM? (egressgate closes connections from other addresses at accept, and"
                    say "  its audit trail records them with reason client_denied)" ;;
                *) say "  The proxy gave no HTTP answer." ;;
            esac ;;
        *)
            say "  The proxy answered the CONNECT with $connect_code."
            explain_refusal "$reason" ;;
    esac
    return 1
}

# ---------------------------------------------------------------------------------------------
# Undo

undo() {
    if [ ! -d "$BACKUP" ]; then
        say "nothing to undo: no backup under $STATE (this script has changed nothing here)"
        return 0
    fi
    local rel dest unit="" list
    list=$(cd "$BACKUP" && find . -type f | sed 's|^\./||' | sort)
    while IFS= read -r rel; do
        [ -n "$rel" ] || continue
        case "$rel" in
            *.absent)
                rel=${rel%.absent}
                dest=$(path_of "$rel")
                if [ -e "$dest" ]; then
                    if [ "$DRY_RUN" -eq 1 ]; then show_diff "$rel" "$dest" /dev/null; else rm -f "$dest"; say "$dest: removed (it did not exist before)"; fi
                fi ;;
            *)
                dest=$(path_of "$rel")
                if [ -f "$dest" ] && cmp -s "$BACKUP/$rel" "$dest"; then
                    say "$dest: already as before"
                elif [ "$DRY_RUN" -eq 1 ]; then
                    if [ -e "$dest" ]; then show_diff "$rel" "$dest" "$BACKUP/$rel"; else show_diff "$rel" /dev/null "$BACKUP/$rel"; fi
                else
                    mkdir -p "$(dirname "$dest")"
                    local tmp
                    tmp=$(mktemp "$(dirname "$dest")/.egressgate.XXXXXX")
                    cp -p "$BACKUP/$rel" "$tmp"
                    mv -f "$tmp" "$dest"
                    say "$dest: restored"
                fi ;;
        esac
        case "$rel" in
            etc/systemd/system/*.service.d/"$DROPIN_NAME")
                unit=${rel#etc/systemd/system/}
                unit=${unit%.service.d/*} ;;
        esac
    done <<<"$list"
    if [ "$DRY_RUN" -eq 1 ]; then
        say "would remove $STATE"
        say "dry run: nothing changed"
        [ -z "$unit" ] || systemd_apply "$unit"
        return 0
    fi
    local created=""
    [ ! -f "$CREATED_DIRS" ] || created=$(cat "$CREATED_DIRS")
    rm -rf "$STATE"
    # directories this script created, innermost first, if nothing else has moved in
    if [ -n "$created" ]; then
        while IFS= read -r rel; do
            [ -n "$rel" ] || continue
            dest=$(path_of "$rel")
            [ ! -d "$dest" ] || rmdir "$dest" 2>/dev/null || true
        done <<<"$(printf '%s\n' "$created" | sort -r -u)"
    fi
    say "undone: the files are as they were before the first run"
    [ -z "$unit" ] || systemd_apply "$unit"
}

# ---------------------------------------------------------------------------------------------
# Main

if [ "$UNDO" -eq 1 ]; then
    undo
    exit 0
fi

UNIT=$(agent_unit)
WAAGENT=$(path_of "$WAAGENT_REL")
ENVIRONMENT=$(path_of "$ENVIRONMENT_REL")
DROPIN_REL="etc/systemd/system/$UNIT.service.d/$DROPIN_NAME"

say "proxy $PROXY_HOST:$PROXY_PORT for the agent ($UNIT.service) and the environment of $ROOT"

if [ -f "$WAAGENT" ]; then
    wanted_waagent_conf "$WAAGENT" "$WORK/waagent.conf"
    install_file "$WAAGENT_REL" "$WORK/waagent.conf"
else
    say "$WAAGENT: not found, skipped (no WALinuxAgent here: not an Azure VM image?)"
fi

if [ -f "$ENVIRONMENT" ]; then
    wanted_environment "$ENVIRONMENT" "$WORK/environment"
else
    wanted_environment /dev/null "$WORK/environment"
fi
install_file "$ENVIRONMENT_REL" "$WORK/environment"

wanted_dropin "$WORK/dropin"
install_file "$DROPIN_REL" "$WORK/dropin"

if [ "$CHANGED" -eq 0 ]; then
    say "already configured: nothing changed"
elif [ "$DRY_RUN" -eq 1 ]; then
    systemd_apply "$UNIT"
    say "dry run: nothing changed"
else
    systemd_apply "$UNIT"
fi

if [ "$DRY_RUN" -eq 1 ] || [ "$CHECK" -eq 0 ]; then
    exit 0
fi
check_route || exit 1
