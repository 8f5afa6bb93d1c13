#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# make demo: on a fresh Debian/Ubuntu host, as root. Builds tollgate, starts a
# daemon with a demo config, runs an unmodified client (curl) in a demo cgroup
# against a loopback web service at 127.0.0.2:8088, shows that the connection
# went through tollgate, prints the recorded session, and cleans up.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "make demo needs root (it loads eBPF programs and creates a cgroup)" >&2
	exit 1
fi
export PATH="$PATH:/usr/local/go/bin"

need=()
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
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
server_pid=""

cleanup() {
	set +e
	[ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	"$bin" uninstall --config "$work/tollgate.yaml" >/dev/null 2>&1
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rmdir "$cgroup" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$cgroup" "$work/www"
echo "hello from the protected service" > "$work/www/index.html"
python3 -m http.server --bind 127.0.0.2 8088 --directory "$work/www" >"$work/server.log" 2>&1 &
server_pid=$!

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

echo
echo "==> the recorded session (tollgate audit tail)"
sleep 0.3
"$bin" audit tail --config "$work/tollgate.yaml" -n 20
echo
echo "==> the same records exactly as stored (tollgate audit tail -o json -n 2)"
"$bin" audit tail --config "$work/tollgate.yaml" -n 2 -o json
echo
echo "==> evidence for an auditor: export a bundle and verify it offline with the host's public key"
"$bin" audit export --config "$work/tollgate.yaml" --out "$work/evidence.tar"
"$bin" audit verify "$work/evidence.tar" --key "$work/state/host.pub"
echo
echo "==> done; cleaning up"
