#!/usr/bin/env bash
# Install the real SMTP peers the tests start privately on 127.0.0.1 (tests/peers/):
# Postfix (smtpd, smtp-sink, smtp-source), Dovecot's auth server (SASL for Postfix),
# unbound (the DNS server and DNSSEC-validating resolver of the routing tests),
# stunnel4 (implicit TLS in front of smtp-sink) and openssl (s_server, a server that
# renegotiates on request).
# Debian/Ubuntu, as root. Idempotent: does nothing when everything is already installed
# (set FORCE_APT=1 to run apt anyway). The system-wide Postfix/Dovecot services are never
# left running: the tests only ever run their own instances on free ports.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "install-peers.sh: must run as root" >&2
    exit 1
fi

PACKAGES=(postfix dovecot-core unbound stunnel4 openssl)
export DEBIAN_FRONTEND=noninteractive

have_all() {
    command -v postfix >/dev/null && command -v postconf >/dev/null &&
        command -v smtp-sink >/dev/null && command -v smtp-source >/dev/null &&
        command -v dovecot >/dev/null && command -v doveadm >/dev/null &&
        command -v unbound >/dev/null && command -v unbound-control >/dev/null &&
        command -v stunnel4 >/dev/null && command -v openssl >/dev/null
}

if ! have_all || [[ ${FORCE_APT:-0} == 1 ]]; then
    # "Local only" keeps a system Postfix, should anything ever start it, on loopback.
    debconf-set-selections <<'EOF'
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string localhost
EOF
    # Forbid maintainer scripts from starting services during the install (the standard
    # Debian policy-rc.d hook; honoured by invoke-rc.d with or without systemd). Keep an
    # existing policy (e.g. Docker images ship one) untouched.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    trap 'if [[ $created_policy == 1 ]]; then rm -f "$policy"; fi' EXIT
    apt-get update
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
fi

# Belt and braces: stop the system instances if something started them anyway, and keep
# them from starting at boot (no systemd here; update-rc.d handles sysv links).
if postfix status >/dev/null 2>&1; then
    postfix stop || true
fi
if [[ -e /run/dovecot/master.pid ]] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
    doveadm stop || true
fi
if [[ -e /run/unbound.pid ]] && kill -0 "$(cat /run/unbound.pid)" 2>/dev/null; then
    kill "$(cat /run/unbound.pid)" || true
fi
if command -v update-rc.d >/dev/null; then
    update-rc.d postfix disable >/dev/null 2>&1 || true
    update-rc.d dovecot disable >/dev/null 2>&1 || true
    update-rc.d unbound disable >/dev/null 2>&1 || true
    update-rc.d stunnel4 disable >/dev/null 2>&1 || true
fi

if command -v ss >/dev/null && ss -ltn 'sport = :25' | grep -q LISTEN; then
    echo "install-peers.sh: warning: something still listens on port 25" >&2
fi

echo "install-peers.sh: $(postconf -h mail_version | sed 's/^/postfix /'), $(dovecot --version | sed 's/^/dovecot /'), $(unbound -V | head -1), $(stunnel4 -version 2>&1 | sed -n 's/^stunnel \([0-9.]*\).*/stunnel \1/p' | head -1)"
