#!/bin/sh
# Runs before removal (deb: remove/upgrade; rpm: %preun with $1 = 0 on erase).
set -e
case "$1" in
	remove|0)
		if [ -d /run/systemd/system ]; then
			systemctl stop tollgate.service >/dev/null 2>&1 || true
			systemctl disable tollgate.service >/dev/null 2>&1 || true
		fi
		# The pinned programs fail closed without the daemon: detach them,
		# or removing the package would leave workloads unable to connect.
		/usr/bin/tollgate uninstall --force --config /etc/tollgate/tollgate.yaml >/dev/null 2>&1 || true
		;;
esac
exit 0
