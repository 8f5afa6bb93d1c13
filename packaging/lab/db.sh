#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The target host: a PostgreSQL the agents' automation reaches, with a
# role whose password only the agents' tollgate knows.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
lab_hosts

apt-get update -qq
apt-get install -y -qq postgresql
conf=$(find /etc/postgresql -name postgresql.conf | head -1)
hba=$(dirname "$conf")/pg_hba.conf
sed -i "s/^#\?listen_addresses.*/listen_addresses = '*'/" "$conf"
grep -q '192.168.56.0/24' "$hba" || echo "host orders app 192.168.56.0/24 scram-sha-256" >>"$hba"
systemctl restart postgresql

sudo -u postgres psql -v ON_ERROR_STOP=1 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN
    CREATE ROLE app LOGIN PASSWORD 'lab-app-password';
  END IF;
END $$;
SELECT 'CREATE DATABASE orders OWNER app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'orders')\gexec
SQL
sudo -u postgres psql -v ON_ERROR_STOP=1 -d orders <<'SQL'
CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer text, email text, total numeric, at timestamptz DEFAULT now());
ALTER TABLE orders OWNER TO app;
INSERT INTO orders (customer, email, total)
  SELECT 'customer ' || g, 'c' || g || '@example.com', g * 10 FROM generate_series(1, 20) g
  WHERE NOT EXISTS (SELECT FROM orders);
SQL

# SSH: the agents' automation logs in as deploy, and only with a 5-minute
# certificate from the lab's tollgate user CA (the job's own key is not in
# any authorized_keys here). With LogLevel VERBOSE sshd logs the
# certificate's key id, which names the tollgate identity and session:
#   journalctl -u ssh | grep 'Accepted certificate ID "tollgate'
# The host key is the lab's (ssh-keys.sh), which the agents verify.
lab=/vagrant/build/lab
if [ -s "$lab/ssh_user_ca.pub" ] && [ -s "$lab/db_host_key" ]; then
	apt-get install -y -qq openssh-server
	id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash deploy
	install -m 0644 "$lab/ssh_user_ca.pub" /etc/ssh/tollgate_user_ca.pub
	install -m 0600 -o root -g root "$lab/db_host_key" /etc/ssh/tollgate_lab_host_key
	install -m 0644 "$lab/db_host_key.pub" /etc/ssh/tollgate_lab_host_key.pub
	cat >/etc/ssh/sshd_config.d/tollgate-lab.conf <<'CONF'
# tollgate lab (written by packaging/lab/db.sh)
HostKey /etc/ssh/tollgate_lab_host_key
TrustedUserCAKeys /etc/ssh/tollgate_user_ca.pub
LogLevel VERBOSE
CONF
	sshd -t
	systemctl restart ssh
else
	echo "no SSH material in $lab: db takes no SSH logins from tollgate (ssh-keys.sh runs before 'vagrant up db')" >&2
fi
