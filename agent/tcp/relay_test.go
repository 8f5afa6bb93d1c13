// SPDX-License-Identifier: Apache-2.0

package tcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestRelayHalfClose checks that a client which sends a request and shuts
// down its write side still receives the whole response, and that the byte
// counts and close reason are right.
func TestRelayHalfClose(t *testing.T) {
	client, proxyClient := pair(t)
	proxyUp, server := pair(t)

	req := make([]byte, 3<<20)
	rand.Read(req)
	done := make(chan Stats, 1)
	go func() { done <- Relay(context.Background(), proxyClient, proxyUp) }()

	// Server: read everything until EOF, then answer with the reversed length
	// worth of bytes and close.
	srvErr := make(chan error, 1)
	go func() {
		got, err := io.ReadAll(server)
		if err != nil {
			srvErr <- err
			return
		}
		if !bytes.Equal(got, req) {
			srvErr <- io.ErrUnexpectedEOF
			return
		}
		_, err = server.Write(got[:1<<20])
		server.Close()
		srvErr <- err
	}()

	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	if !bytes.Equal(resp, req[:1<<20]) {
		t.Fatalf("response differs: got %d bytes", len(resp))
	}
	st := <-done
	if st.Up != int64(len(req)) || st.Down != 1<<20 {
		t.Fatalf("counts up=%d down=%d", st.Up, st.Down)
	}
	if st.Reason != ReasonClientClosed {
		t.Fatalf("reason %q, want %q", st.Reason, ReasonClientClosed)
	}
	if st.Err != nil {
		t.Fatalf("err %v", st.Err)
	}
}

// TestRelayCancel checks that cancelling the context ends a relay whose
// peers are both idle, and reports the shutdown.
func TestRelayCancel(t *testing.T) {
	_, proxyClient := pair(t)
	proxyUp, _ := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Stats, 1)
	go func() { done <- Relay(ctx, proxyClient, proxyUp) }()
	cancel()
	st := <-done
	if st.Reason != ReasonShutdown {
		t.Fatalf("reason %q, want %q", st.Reason, ReasonShutdown)
	}
}
