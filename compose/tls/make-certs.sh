#!/usr/bin/env bash
# The certificates of compose's TLS variant (compose/docker-compose.tls.yml), made here in compose/tls/:
#   ca.pem, ca.key           a CA of this deployment's own (ca.pem is what every client trusts)
#   server.pem, server.key   one server certificate it signs, for every server of compose and of its cluster
#                            variant: DNS names rabbitmq, rabbitmq-2, rabbitmq-3, postgres, postgres-standby, localhost
# Keys are mode 0600, certificates 0644; the directory's .gitignore keeps all four out of git.
#
#   compose/tls/make-certs.sh           makes what is missing, expires within 30 days, is no longer signed by
#                                       ca.pem or lacks one of the names; leaves valid files as they are
#   compose/tls/make-certs.sh --force   a new CA and a new server certificate (every client needs the new
#                                       ca.pem: recreate the containers, `up -d --force-recreate`)
#
# The servers do not read server.key from here (it belongs to this host's user, 0600): at every `up` the one-shot
# services tls-files-rabbitmq and tls-files-postgres copy it, with the certificates, into a volume of each
# server, owned by the user that server runs as in its image (rabbitmq, postgres), 0600 (compose/tls/server-files.sh).
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAMES=(rabbitmq rabbitmq-2 rabbitmq-3 postgres postgres-standby localhost)
SAN=$(printf 'DNS:%s, ' "${NAMES[@]}"); SAN=${SAN%, }
# Renew a certificate this close to its end (seconds): 30 days.
RENEW=$((30 * 86400))

force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac
command -v openssl >/dev/null || { echo "make-certs: openssl is needed" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { echo "make-certs: $*"; }

# The key's public half, to tell that a certificate belongs to it.
public_key() { openssl pkey -pubout -in "$1" 2>/dev/null; }
cert_public_key() { openssl x509 -noout -pubkey -in "$1" 2>/dev/null; }

# The certificate's DNS names, one a line, sorted (from -text: older OpenSSL and LibreSSL lack `x509 -ext`).
cert_names() {
  openssl x509 -noout -text -in "$1" 2>/dev/null | grep -A1 'X509v3 Subject Alternative Name' | tail -n +2 \
    | tr ',' '\n' | sed -n 's/^ *DNS://p' | sort
}

ca_valid() {
  [ -s "$DIR/ca.pem" ] && [ -s "$DIR/ca.key" ] &&
    openssl x509 -checkend "$RENEW" -noout -in "$DIR/ca.pem" >/dev/null 2>&1 &&
    [ "$(public_key "$DIR/ca.key")" = "$(cert_public_key "$DIR/ca.pem")" ]
}

server_valid() {
  [ -s "$DIR/server.pem" ] && [ -s "$DIR/server.key" ] &&
    openssl x509 -checkend "$RENEW" -noout -in "$DIR/server.pem" >/dev/null 2>&1 &&
    openssl verify -CAfile "$DIR/ca.pem" "$DIR/server.pem" >/dev/null 2>&1 &&
    [ "$(public_key "$DIR/server.key")" = "$(cert_public_key "$DIR/server.pem")" ] &&
    [ "$(cert_names "$DIR/server.pem")" = "$(printf '%s\n' "${NAMES[@]}" | sort)" ]
}

# Each file is made in $work and moved into place, key and certificate together, so that a failure halfway
# leaves the old pair.
make_ca() {
  log "making $DIR/ca.pem (a new CA: clients must trust the new ca.pem)"
  (umask 077; openssl genrsa -out "$work/ca.key" 2048 2>/dev/null)
  openssl req -new -key "$work/ca.key" -subj "/CN=Candlecast compose CA" -out "$work/ca.csr"
  printf '%s\n' "basicConstraints = critical, CA:TRUE" "keyUsage = critical, keyCertSign, cRLSign" \
    "subjectKeyIdentifier = hash" > "$work/ca.ext"
  openssl x509 -req -in "$work/ca.csr" -signkey "$work/ca.key" -days 3650 -sha256 \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$work/ca.ext" -out "$work/ca.pem" 2>/dev/null
  chmod 600 "$work/ca.key"; chmod 644 "$work/ca.pem"
  mv -f "$work/ca.key" "$DIR/ca.key"
  mv -f "$work/ca.pem" "$DIR/ca.pem"
}

make_server() {
  log "making $DIR/server.pem ($SAN)"
  (umask 077; openssl genrsa -out "$work/server.key" 2048 2>/dev/null)
  openssl req -new -key "$work/server.key" -subj "/CN=Candlecast compose servers" -out "$work/server.csr"
  printf '%s\n' "subjectAltName = $SAN" "basicConstraints = critical, CA:FALSE" \
    "keyUsage = critical, digitalSignature, keyEncipherment" "extendedKeyUsage = serverAuth" \
    "authorityKeyIdentifier = keyid" "subjectKeyIdentifier = hash" > "$work/server.ext"
  openssl x509 -req -in "$work/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -days 825 -sha256 \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null
  chmod 600 "$work/server.key"; chmod 644 "$work/server.pem"
  mv -f "$work/server.key" "$DIR/server.key"
  mv -f "$work/server.pem" "$DIR/server.pem"
}

made=0
if [ $force -eq 1 ] || ! ca_valid; then make_ca; made=1; fi
if [ $made -eq 1 ] || ! server_valid; then make_server; made=1; fi
# Whatever made them, no key stays readable by others.
chmod 600 "$DIR/ca.key" "$DIR/server.key"
chmod 644 "$DIR/ca.pem" "$DIR/server.pem"
openssl verify -CAfile "$DIR/ca.pem" "$DIR/server.pem" >/dev/null

if [ $made -eq 1 ]; then
  log "done; start (or recreate) compose with the TLS override:"
  log "  docker-compose -f compose/docker-compose.yml -f compose/docker-compose.tls.yml --env-file compose/.env up -d --build --force-recreate"
else
  log "$DIR/ca.pem and server.pem are valid until $(openssl x509 -noout -enddate -in "$DIR/server.pem" | cut -d= -f2); nothing to do (--force makes new ones)"
fi
