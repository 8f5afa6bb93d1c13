// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"net"
	"os"
)

// sdNotify sends a state string to systemd when the daemon runs under a
// Type=notify unit; it does nothing otherwise.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
