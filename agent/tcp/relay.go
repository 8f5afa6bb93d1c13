// SPDX-License-Identifier: Apache-2.0

// Package tcp is the generic protocol handler: a full-duplex byte relay
// between the intercepted client and the real destination, with half-close,
// byte counts and a close reason for the session record.
package tcp

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Close reasons reported by Relay.
const (
	ReasonClientClosed   = "client closed"
	ReasonUpstreamClosed = "upstream closed"
	ReasonBothClosed     = "both closed"
	ReasonShutdown       = "daemon shutdown"
	ReasonClientError    = "client error"
	ReasonUpstreamError  = "upstream error"
)

// Stats is what a finished relay reports.
type Stats struct {
	// Up counts bytes from the client to the upstream, Down the reverse.
	Up, Down int64
	// Reason says why the relay ended.
	Reason string
	// Err is the first transport error, if any.
	Err error
}

// halfCloser is a connection that can shut down its write side only.
type halfCloser interface {
	CloseWrite() error
}

// Relay copies bytes both ways until both directions are finished. When one
// side finishes sending (EOF), the other side's write half is shut down so
// the peer sees EOF too while the reverse direction keeps flowing. When ctx
// is cancelled both connections are closed. Relay closes both connections
// before it returns.
func Relay(ctx context.Context, client, upstream net.Conn) Stats {
	var (
		st        Stats
		up, down  atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		firstDone string
	)
	finish := func(dir string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && st.Err == nil && !isClosedErr(err) {
			st.Err = err
			if dir == "up" {
				st.Reason = ReasonClientError
			} else {
				st.Reason = ReasonUpstreamError
			}
		}
		if firstDone == "" {
			firstDone = dir
		}
	}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		if st.Reason == "" {
			st.Reason = ReasonShutdown
		}
		mu.Unlock()
		client.Close()
		upstream.Close()
	})
	defer stop()

	copyHalf := func(dst, src net.Conn, n *atomic.Int64, dir string) {
		defer wg.Done()
		// Plain io.Copy between two TCP connections splices in the
		// kernel (no user-space buffer); the count comes back at the end.
		c, err := io.Copy(dst, src)
		n.Add(c)
		if err != nil {
			// A failed direction cannot recover: tear both down so the
			// other copy does not wait forever.
			finish(dir, err)
			client.Close()
			upstream.Close()
			return
		}
		finish(dir, nil)
		if hc, ok := dst.(halfCloser); ok {
			if err := hc.CloseWrite(); err != nil && !isClosedErr(err) {
				client.Close()
				upstream.Close()
			}
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go copyHalf(upstream, client, &up, "up")
	go copyHalf(client, upstream, &down, "down")
	wg.Wait()
	client.Close()
	upstream.Close()

	st.Up, st.Down = up.Load(), down.Load()
	if st.Reason == "" {
		switch firstDone {
		case "up":
			st.Reason = ReasonClientClosed
		case "down":
			st.Reason = ReasonUpstreamClosed
		default:
			st.Reason = ReasonBothClosed
		}
	}
	return st
}

// isClosedErr reports errors that only mean "the other side or we closed
// the connection", which are normal ends of a relay.
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}

// SetKeepAlive enables TCP keep-alives so a vanished peer does not hold a
// relay open forever.
func SetKeepAlive(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 15 * time.Second, Count: 4})
	}
}
