// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// markControl sets SO_MARK on a socket before it connects or listens. The
// redirect programs never redirect a marked socket, which is how the
// daemon's own upstream connections reach the real destination.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_MARK: %w", serr)
		}
		return nil
	}
}

// dialMarked dials address with the daemon's mark.
func dialMarked(ctx context.Context, mark uint32, address string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, Control: markControl(mark)}
	return d.DialContext(ctx, "tcp", address)
}

// listenMarked listens on address with the daemon's mark.
func listenMarked(ctx context.Context, mark uint32, address string) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: markControl(mark)}
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}
