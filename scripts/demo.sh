#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# make demo: on a fresh Debian/Ubuntu host, as root. Builds tollgate, starts a
# daemon with a demo config and two protected "remote" services on loopback:
# a web service at 127.0.0.2:8088 and a throwaway PostgreSQL cluster at
# 127.0.0.2:55432. Unmodified clients (curl, psql) in a demo cgroup go
# through tollgate: psql holds no password (tollgate injects it), reads
# masked customer data, and a bulk DELETE is refused by policy. Then the
# records, an evidence bundle verified offline, the access report; then a
# central collector on the same PostgreSQL, the host enrolled and shipping,
# the fleet view and the fleet report; clean up.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "make demo needs root (it loads eBPF programs and creates a cgroup)" >&2
	exit 1
fi
export PATH="$PATH:/usr/local/go/bin"

need=()
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v psql >/dev/null || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
	echo "==> installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

bin="$(pwd)/bin/tollgate"
work="$(mktemp -d /tmp/tollgate-demo.XXXXXX)"
cg2="$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)"
if [ -z "$cg2" ]; then
	echo "no cgroup2 mount found; tollgate needs cgroup v2" >&2
	exit 1
fi
cgroup="$cg2/tollgate-demo"
pin="/sys/fs/bpf/tollgate-demo"
daemon_pid=""
collector_pid=""
server_pid=""
pg_started=""
pgbin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)"

cleanup() {
	set +e
	[ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	[ -n "$collector_pid" ] && kill -TERM "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null
	"$bin" uninstall --config "$work/tollgate.yaml" >/dev/null 2>&1
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	[ -n "$pg_started" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg/data" stop -m fast >/dev/null 2>&1
	rmdir "$cgroup" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$cgroup" "$work/www"
echo "hello from the protected service" > "$work/www/index.html"
python3 -m http.server --bind 127.0.0.2 8088 --directory "$work/www" >"$work/server.log" 2>&1 &
server_pid=$!

# A throwaway PostgreSQL cluster (initdb refuses root: it runs as postgres).
echo "==> starting a throwaway PostgreSQL at 127.0.0.2:55432"
chmod 755 "$work"
mkdir -p "$work/pg"
chown postgres: "$work/pg"
dbpass="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
printf '%s\n' "$dbpass" > "$work/pg/pw" && chown postgres: "$work/pg/pw"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg/data" -U postgres --pwfile "$work/pg/pw" \
	--auth-host=scram-sha-256 --auth-local=peer >/dev/null
pg_started=1
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
	-o "-p 55432 -c listen_addresses=127.0.0.2 -c unix_socket_directories=$work/pg" start >/dev/null
runuser -u postgres -- psql -q -h "$work/pg" -p 55432 -d postgres -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE app LOGIN PASSWORD '$dbpass';
CREATE DATABASE shop OWNER app;
\c shop
SET ROLE app;
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card text);
INSERT INTO customers VALUES
  (1, 'Ada', 'ada@example.com', '4111 1111 1111 1111'),
  (2, 'Grace', 'grace@example.org', '5500 0000 0000 0004');
CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric);
INSERT INTO orders VALUES (10, 1, 42.50), (11, 2, 17.00);
SQL
# The real password: root-only, read by tollgate, never by the client.
install -m 600 "$work/pg/pw" "$work/db-password"

cat > "$work/tollgate.yaml" <<YAML
host_id: demo
state_dir: $work/state
api_socket: $work/api.sock
bpf_pin_path: $pin
listen_address: 127.0.0.1
workloads:
  - name: demo-client
    cgroup: /tollgate-demo
targets:
  - name: demo-web
    protocol: tcp
    match: ["127.0.0.2:8088"]
  - name: shop-db
    protocol: postgres
    match: ["127.0.0.2:55432"]
    client_auth: process          # who connects is known from the kernel
    upstream:
      user: app
      password_file: $work/db-password
      sslmode: disable
identities:
  - name: demo-job
    process: {cgroup: /tollgate-demo}
rules:
  - id: job-reads-and-writes
    when: {identities: [demo-job], targets: [shop-db], classes: [select, insert, update, delete, transaction, set]}
    action: allow
  - id: no-bulk-delete
    when: {classes: [delete_without_where, update_without_where, truncate]}
    action: deny
    reason: bulk changes need a change ticket
masking:
  - id: customer-contact
    targets: [shop-db]
    columns: [public.customers.email]
    style: partial
    keep: 4
  - id: payment-data
    targets: [shop-db]
    detectors: [card_number]
    style: redact
YAML

echo "==> config"
cat "$work/tollgate.yaml"
echo "==> starting the daemon"
"$bin" daemon --config "$work/tollgate.yaml" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
	"$bin" status --config "$work/tollgate.yaml" >/dev/null 2>&1 && break
	sleep 0.1
done
"$bin" status --config "$work/tollgate.yaml"

# wait for the web server
for _ in $(seq 50); do
	curl -s -o /dev/null http://127.0.0.2:8088/ && break
	sleep 0.1
done

echo
echo "==> an unmodified client in the demo cgroup: curl http://127.0.0.2:8088/"
sh -c 'echo $$ > '"$cgroup"'/cgroup.procs && exec curl -sS -w "curl saw peer %{remote_ip}:%{remote_port}\n" http://127.0.0.2:8088/'
echo
echo "==> the same client outside the workload goes direct:"
curl -sS -o /dev/null -w "curl saw peer %{remote_ip}:%{remote_port}\n" http://127.0.0.2:8088/


in_workload() { sh -c 'echo $$ > '"$cgroup"'/cgroup.procs && exec "$@"' sh "$@"; }
dsn="host=127.0.0.2 port=55432 user=app dbname=shop"
echo
echo "==> psql in the demo cgroup, without any password: tollgate logs in for it"
echo "    SELECT * FROM customers   (email masked by column, card numbers by detector)"
in_workload psql -X "$dsn" -c 'SELECT * FROM customers ORDER BY id'
echo "==> an UPDATE with a WHERE is allowed; a DELETE without WHERE is refused by policy"
in_workload psql -X "$dsn" -c "UPDATE orders SET total = total + 1 WHERE id = 10" || true
in_workload psql -X "$dsn" -c "DELETE FROM orders" || true
echo "==> DDL matches no rule: default deny"
in_workload psql -X "$dsn" -c "DROP TABLE customers" || true
echo "==> the same psql outside the workload has no credentials:"
PGCONNECT_TIMEOUT=5 psql -X -w "$dsn" -c 'SELECT 1' 2>&1 | head -1 || true

echo
echo "==> the recorded sessions (tollgate audit tail)"
sleep 0.5
"$bin" audit tail --config "$work/tollgate.yaml" -n 40
echo
echo "==> the same records exactly as stored (tollgate audit tail -o json -n 2)"
"$bin" audit tail --config "$work/tollgate.yaml" -n 2 -o json
echo
echo "==> evidence for an auditor: export a bundle and verify it offline with the host's public key"
"$bin" audit export --config "$work/tollgate.yaml" --out "$work/evidence.tar"
"$bin" audit verify "$work/evidence.tar" --key "$work/state/host.pub"
echo
echo "==> the access report for the auditor (tollgate audit report)"
"$bin" audit report --config "$work/tollgate.yaml"
echo
echo "==> the central collector: on the same PostgreSQL; the host enrolls with a one-time token and ships"
runuser -u postgres -- psql -q -h "$work/pg" -p 55432 -d postgres -v ON_ERROR_STOP=1 \
	-c "CREATE DATABASE tollgate_collector OWNER app"
cat > "$work/collector.yaml" <<YAML
listen: 127.0.0.1:18443
insecure_loopback: true            # demo only: plain HTTP, on loopback
database:
  dsn: "host=127.0.0.2 port=55432 user=app dbname=tollgate_collector sslmode=disable"
  password_file: $work/db-password
signing_key: $work/collector/cosign.key
YAML
"$bin" collector serve --config "$work/collector.yaml" 2>"$work/collector.log" &
collector_pid=$!
for _ in $(seq 100); do
	curl -s -o /dev/null http://127.0.0.1:18443/v1/healthz && break
	sleep 0.1
done
"$bin" collector enroll --config "$work/collector.yaml" --host demo > "$work/enroll.token"
chmod 600 "$work/enroll.token"
cat >> "$work/tollgate.yaml" <<YAML
audit:
  ship: {url: "http://127.0.0.1:18443", token_file: $work/enroll.token, interval: 200ms}
YAML
echo "==> restarting the daemon with audit.ship set"
kill -TERM "$daemon_pid" && { wait "$daemon_pid" || true; }
"$bin" daemon --config "$work/tollgate.yaml" 2>>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
	"$bin" status --config "$work/tollgate.yaml" 2>/dev/null | grep -q "lag 0 records" && break
	sleep 0.1
done
"$bin" status --config "$work/tollgate.yaml" | grep -E "^(audit log|shipping)"
echo
echo "==> the fleet view (tollgate collector hosts)"
"$bin" collector hosts --config "$work/collector.yaml"
report="${TMPDIR:-/tmp}/tollgate-demo-fleet-report.html"
"$bin" collector report --config "$work/collector.yaml" -o html --out "$report"
echo
echo "==> the fleet access report, from PostgreSQL: $report"
echo "    the collector's cosigning key (for auditors): $(cat "$work/collector/cosign.key.pub")"

echo
echo "==> done; cleaning up"
