#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs on the host (a Vagrant trigger, before db comes up): makes the lab's
# SSH material in build/lab/, which the machines' synced folder carries.
#   ssh_user_ca, .pub   the user CA every agent's tollgate signs its 5-minute
#                       login certificates with (state_dir/ssh_user_ca); db
#                       trusts it (TrustedUserCAKeys). One CA for the fleet,
#                       so db needs one line, whichever agent comes.
#   db_host_key, .pub   db's sshd host key, so the agents can verify db
#                       (upstream.known_hosts) without trusting on first use.
# Idempotent: existing keys are kept. This is lab material; in production
# each agent keeps its own CA, created by tollgate on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build/lab
umask 077
[ -s build/lab/ssh_user_ca ] || ssh-keygen -q -t ed25519 -N '' -C 'tollgate lab user CA' -f build/lab/ssh_user_ca
[ -s build/lab/db_host_key ] || ssh-keygen -q -t ed25519 -N '' -C 'db (tollgate lab)' -f build/lab/db_host_key
echo "lab SSH keys in build/lab/: ssh_user_ca (agents), db_host_key (db)"
