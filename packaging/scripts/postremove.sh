#!/bin/sh
# The audit log in /var/lib/tollgate is evidence: it is never deleted here.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
