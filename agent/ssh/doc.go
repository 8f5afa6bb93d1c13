// SPDX-License-Identifier: Apache-2.0

// Package ssh is the SSH protocol handler. Toward the client it is an SSH
// server that presents a host certificate from tollgate's host CA for the
// address the client dialled and accepts the client's own keys (identity
// comes from the kernel, not from the key). Toward the target it is an SSH
// client that logs in with a per-session, minutes-long certificate from
// tollgate's user CA (or a configured key) and verifies the target's host
// key against a configured known_hosts file. In between, every channel and
// request is judged by policy (exec commands by program and arguments,
// shells, subsystems, port, agent and X11 forwarding), held for approval
// when a review rule says so, and recorded: requests before they are
// forwarded, session bytes in timed chunks, exit statuses and SFTP
// operations.
package ssh
