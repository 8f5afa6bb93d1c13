#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Shared by the lab's provisioning scripts: install the tollgate package
# built on the host (`make package`, found through the synced /vagrant).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# install_tollgate installs the newest locally built .deb.
install_tollgate() {
	local deb
	deb=$(find /vagrant/dist -maxdepth 1 -name 'tollgate_*_amd64.deb' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-)
	if [ -z "$deb" ]; then
		echo "no dist/tollgate_*_amd64.deb: run 'make package' on the host first" >&2
		exit 1
	fi
	apt-get install -y -qq "$deb"
}

# lab_hosts makes the lab's names resolve on every machine.
lab_hosts() {
	grep -q 'tollgate lab' /etc/hosts && return
	cat >>/etc/hosts <<'HOSTS'
# tollgate lab
192.168.56.10 collector
192.168.56.20 db
192.168.56.31 agent1
192.168.56.32 agent2
HOSTS
}
