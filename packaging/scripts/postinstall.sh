#!/bin/sh
# Runs after install and upgrade (deb: configure; rpm: %post).
set -e
if ! getent group tollgate >/dev/null 2>&1; then
	groupadd --system tollgate
fi
# Installed with TOLLGATE_SSH_KNOWN_HOSTS set to a known_hosts file (e.g.
# TOLLGATE_SSH_KNOWN_HOSTS=/etc/ssh/ssh_known_hosts apt install ./tollgate_*.deb),
# the package puts tollgate's host CA line there, so that the SSH clients
# of this host trust the host certificates of the proxy; an earlier such
# line is replaced. The CA is made in the state directory if it is new.
if [ -n "${TOLLGATE_SSH_KNOWN_HOSTS:-}" ]; then
	/usr/bin/tollgate ssh known-hosts --install "$TOLLGATE_SSH_KNOWN_HOSTS"
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# Restart on upgrade only if it was running: the pinned programs keep
	# enforcing during the restart and are swapped in place.
	systemctl try-restart tollgate.service >/dev/null 2>&1 || true
fi
exit 0
