#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# An agent host: tollgate intercepts the sample automation job (a systemd
# unit running psql in a loop against the db host), injects the database
# password the job never sees, decides each statement and records it.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
lab_hosts

apt-get update -qq
apt-get install -y -qq postgresql-client
install_tollgate

install -m 0600 -o root -g root /dev/null /etc/tollgate/db.password
echo 'lab-app-password' >/etc/tollgate/db.password

host=$(hostname)
cat >/etc/tollgate/tollgate.yaml <<YAML
# tollgate lab agent (written by packaging/lab/agent.sh)
host_id: $host
workloads:
  - name: lab-job
    unit: lab-job.service
targets:
  - name: orders-db
    protocol: postgres
    match: ["192.168.56.20:5432"]
    client_auth: process
    upstream:
      user: app
      password_file: /etc/tollgate/db.password
      database: orders
      sslmode: disable
identities:
  - name: lab-job
    process: {unit: lab-job.service}
rules:
  - id: job-reads-and-inserts
    when: {identities: [lab-job], targets: [orders-db], classes: [select, insert]}
    action: allow
  - id: no-bulk-changes
    when: {classes: [delete_without_where, update_without_where, truncate]}
    action: deny
    reason: bulk changes need a change ticket
masking:
  - id: emails
    columns: ["public.orders.email"]
    style: partial
metrics:
  listen: 127.0.0.1:9464
YAML

# Shipping to the collector, with the CA and the single-use token that
# enrollment.sh fetched on the host.
lab=/vagrant/build/lab
if [ -s "$lab/$host.token" ] && [ -s "$lab/collector-ca.crt" ]; then
	install -m 0644 "$lab/collector-ca.crt" /etc/tollgate/collector-ca.crt
	install -m 0600 -o root -g root "$lab/$host.token" /etc/tollgate/collector.token
	cat >>/etc/tollgate/tollgate.yaml <<'YAML'
audit:
  ship:
    url: https://collector:8443
    ca: /etc/tollgate/collector-ca.crt
    token_file: /etc/tollgate/collector.token
YAML
else
	echo "no enrollment material in $lab: this agent does not ship (bring the collector up first)" >&2
fi

# The automation: unmodified psql, no password, in a loop. Every third
# round it tries a bulk delete, which policy denies.
cat >/usr/local/bin/lab-job <<'JOB'
#!/usr/bin/env bash
set -u
export PGHOST=192.168.56.20 PGUSER=app PGDATABASE=orders PGCONNECT_TIMEOUT=5
n=0
while :; do
	n=$((n + 1))
	psql -Atc "INSERT INTO orders (customer, email, total) VALUES ('$(hostname) round $n', 'job@example.com', $n)" || true
	psql -Atc "SELECT count(*), max(email) FROM orders" || true
	if [ $((n % 3)) -eq 0 ]; then
		psql -Atc "DELETE FROM orders" || true
	fi
	sleep 10
done
JOB
chmod 0755 /usr/local/bin/lab-job
cat >/etc/systemd/system/lab-job.service <<'UNIT'
[Unit]
Description=tollgate lab: sample automation job (psql in a loop)
After=network-online.target tollgate.service
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/lab-job
DynamicUser=yes
Restart=always

[Install]
WantedBy=multi-user.target
UNIT

tollgate doctor || true
systemctl enable tollgate
systemctl restart tollgate
systemctl daemon-reload
systemctl enable --now lab-job
