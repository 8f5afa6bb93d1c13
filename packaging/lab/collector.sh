#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The collector host: PostgreSQL for the fleet's records and
# `tollgate collector serve` over HTTPS with a lab CA. The agents get the
# CA and their enrollment tokens through enrollment.sh, which the
# Vagrantfile runs on the host once this machine is up.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
lab_hosts

apt-get update -qq
apt-get install -y -qq postgresql openssl
install_tollgate

# The database and its role; the password only in a root-only file.
pwfile=/etc/tollgate/collector-db-password
if [ ! -s "$pwfile" ]; then
	install -m 0600 -o root -g root /dev/null "$pwfile"
	openssl rand -hex 24 >"$pwfile"
fi
pw=$(head -1 "$pwfile")
sudo -u postgres psql -v ON_ERROR_STOP=1 -v pw="$pw" <<'SQL'
SELECT format('CREATE ROLE tollgate_collector LOGIN PASSWORD %L', :'pw')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tollgate_collector')\gexec
SELECT 'CREATE DATABASE tollgate_collector OWNER tollgate_collector'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'tollgate_collector')\gexec
SQL

# A lab CA and the collector's certificate for its name and address.
cd /etc/tollgate
if [ ! -s collector-ca.crt ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
		-subj "/CN=tollgate lab CA" -keyout collector-ca.key -out collector-ca.crt
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=collector" \
		-keyout collector-key.pem -out collector.csr
	printf 'subjectAltName=DNS:collector,IP:192.168.56.10\n' >collector.ext
	openssl x509 -req -in collector.csr -CA collector-ca.crt -CAkey collector-ca.key -CAcreateserial \
		-days 365 -extfile collector.ext -out collector.crt
	chmod 0600 collector-ca.key collector-key.pem
	rm -f collector.csr collector.ext
fi

cat >/etc/tollgate/collector.yaml <<'YAML'
# tollgate lab collector (written by packaging/lab/collector.sh)
listen: 192.168.56.10:8443
tls: {cert: /etc/tollgate/collector.crt, key: /etc/tollgate/collector-key.pem}
database:
  dsn: "host=localhost dbname=tollgate_collector user=tollgate_collector sslmode=disable"
  password_file: /etc/tollgate/collector-db-password
signing_key: /var/lib/tollgate-collector/cosign.key
silence_after: 5m
YAML

tollgate collector migrate --config /etc/tollgate/collector.yaml
systemctl enable tollgate-collector
systemctl restart tollgate-collector
