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
