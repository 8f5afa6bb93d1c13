#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# An agent host: tollgate intercepts the sample automation job (a systemd
# unit running psql and ssh in a loop against the db host), injects the
# database password and the SSH login the job never holds, decides each
# statement and command, and records them.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
lab_hosts

apt-get update -qq
apt-get install -y -qq postgresql-client openssh-client
install_tollgate

install -m 0600 -o root -g root /dev/null /etc/tollgate/db.password
echo 'lab-app-password' >/etc/tollgate/db.password

host=$(hostname)
lab=/vagrant/build/lab

# SSH to db, when ssh-keys.sh made the lab's material: the job's ssh
# trusts tollgate's host CA (a line in the system known_hosts), tollgate
# verifies db's host key and logs in with certificates from the lab's
# user CA, which db trusts. The job's own key works nowhere.
ssh_target="" ssh_rules=""
if [ -s "$lab/ssh_user_ca" ] && [ -s "$lab/db_host_key.pub" ]; then
	install -d -m 0700 -o root -g root /var/lib/tollgate
	install -m 0600 -o root -g root "$lab/ssh_user_ca" /var/lib/tollgate/ssh_user_ca
	echo "db,192.168.56.20 $(cut -d' ' -f1,2 "$lab/db_host_key.pub")" >/etc/tollgate/known_hosts.db
	ssh_target='
  - name: db-ssh
    protocol: ssh
    match: ["db:22"]
    upstream:
      user: deploy
      known_hosts: /etc/tollgate/known_hosts.db'
	ssh_rules='
  - id: job-checks-db
    when: {identities: [lab-job], targets: [db-ssh], classes: [exec],
           commands: ["uptime", "systemctl status postgresql*"]}
    action: allow
  - id: no-service-changes
    when: {targets: [db-ssh], commands: ["systemctl stop **", "systemctl restart **"]}
    action: deny
    reason: service changes go through the change process'
else
	echo "no SSH material in $lab: the job does not ssh to db (ssh-keys.sh runs before 'vagrant up db')" >&2
fi

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
      sslmode: disable$ssh_target
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
    reason: bulk changes need a change ticket$ssh_rules
masking:
  - id: emails
    columns: ["public.orders.email"]
    style: partial
metrics:
  listen: 127.0.0.1:9464
YAML

# Shipping to the collector, with the CA and the single-use token that
# enrollment.sh fetched on the host.
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

# The automation runs as labjob, a plain user with its own SSH key (which
# db does not accept: tollgate logs in for it) and no database password.
id labjob >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/labjob --shell /bin/bash labjob
if [ ! -s /var/lib/labjob/.ssh/id_ed25519 ]; then
	install -d -m 0700 -o labjob -g labjob /var/lib/labjob/.ssh
	runuser -u labjob -- ssh-keygen -q -t ed25519 -N '' -C "labjob@$host" -f /var/lib/labjob/.ssh/id_ed25519
fi
if [ -n "$ssh_target" ]; then
	tollgate ssh known-hosts --install /etc/ssh/ssh_known_hosts 'db,192.168.56.20'
fi

# The job: unmodified psql and ssh, no password, in a loop. Every third
# round it tries a bulk delete and a service stop, which policy denies.
cat >/usr/local/bin/lab-job <<'JOB'
#!/usr/bin/env bash
set -u
export PGHOST=192.168.56.20 PGUSER=app PGDATABASE=orders PGCONNECT_TIMEOUT=5
n=0
while :; do
	n=$((n + 1))
	psql -Atc "INSERT INTO orders (customer, email, total) VALUES ('$(hostname) round $n', 'job@example.com', $n)" || true
	psql -Atc "SELECT count(*), max(email) FROM orders" || true
	if [ -f /etc/tollgate/known_hosts.db ]; then
		ssh -o BatchMode=yes deploy@db uptime || true
	fi
	if [ $((n % 3)) -eq 0 ]; then
		psql -Atc "DELETE FROM orders" || true
		if [ -f /etc/tollgate/known_hosts.db ]; then
			ssh -o BatchMode=yes deploy@db 'systemctl stop postgresql' || true
		fi
	fi
	sleep 10
done
JOB
chmod 0755 /usr/local/bin/lab-job
cat >/etc/systemd/system/lab-job.service <<'UNIT'
[Unit]
Description=tollgate lab: sample automation job (psql and ssh in a loop)
After=network-online.target tollgate.service
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/lab-job
User=labjob
Restart=always

[Install]
WantedBy=multi-user.target
UNIT

tollgate doctor || true
systemctl enable tollgate
systemctl restart tollgate
systemctl daemon-reload
systemctl enable --now lab-job
