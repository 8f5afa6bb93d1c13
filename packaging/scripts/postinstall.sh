#!/bin/sh
# Runs after install and upgrade (deb: configure; rpm: %post).
set -e
if ! getent group tollgate >/dev/null 2>&1; then
	groupadd --system tollgate
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# Restart on upgrade only if it was running: the pinned programs keep
	# enforcing during the restart and are swapped in place.
	systemctl try-restart tollgate.service >/dev/null 2>&1 || true
fi
exit 0
