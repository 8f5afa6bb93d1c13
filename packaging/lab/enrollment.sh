#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs on the host (a Vagrant trigger, once the collector is up): fetches
# the lab CA and one single-use enrollment token per agent from the
# collector into build/lab/, which the agents' synced folder carries to
# them. The tokens expire after an hour and work once.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build/lab
vagrant ssh collector -c 'sudo cat /etc/tollgate/collector-ca.crt' >build/lab/collector-ca.crt
for host in agent1 agent2; do
	vagrant ssh collector -c "sudo tollgate collector enroll --host $host" | tr -d '\r' | tail -1 >"build/lab/$host.token"
done
chmod 0600 build/lab/*.token
echo "enrollment material for agent1 and agent2 in build/lab/"
