#!/bin/sh
# One-shot step of the TLS variant (the tls-files-rabbitmq and tls-files-postgres services of
# compose/docker-compose.tls.yml), run as root in the server's own image before the server starts: the CA, the
# server certificate and its key from compose/tls/ (mounted read-only at /candlecast/tls) copied into the
# server's volume (/candlecast/server-tls), owned by the user the image runs its server as ($1: rabbitmq or
# postgres), the key 0600. PostgreSQL refuses a key that another user owns or that others may read, and RabbitMQ,
# which runs as rabbitmq, could not read the host's 0600 copy. Idempotent: run at every `up`, it copies the
# current files (a server reads them when it starts: recreate it after compose/tls/make-certs.sh --force).
set -eu
user=${1:?usage: server-files.sh USER}
from=/candlecast/tls
to=/candlecast/server-tls
for file in ca.pem server.pem server.key; do
  if [ ! -s "$from/$file" ]; then
    echo "tls: compose/tls/$file is missing: run compose/tls/make-certs.sh first" >&2
    exit 1
  fi
done
install -o "$user" -g "$user" -m 644 "$from/ca.pem" "$from/server.pem" "$to/"
install -o "$user" -g "$user" -m 600 "$from/server.key" "$to/server.key"
echo "tls: ca.pem, server.pem and server.key in $to for $user"
