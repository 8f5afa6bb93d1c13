// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"net/netip"
	"sync"
)

// cancelTarget is what a client's cancel key stands for.
type cancelTarget struct {
	session   string
	dst       netip.AddrPort
	dial      DialFunc // the session's upstream dialer (TCP or its unix socket)
	tls       *tls.Config
	pid       uint32 // the real backend pid, which the client also knows
	realKey   []byte // the server's secret, which the client never sees
	clientKey []byte // the secret tollgate gave the client
	// hold is the session's statement on hold, which a cancel ends
	// instead of reaching the server.
	hold holdSlot
}

// cancelKeys maps the keys tollgate hands to clients to the real backend
// keys. The client gets the real pid (so that pg_stat_activity and the
// server log agree with what it sees) and a secret made up here, so a
// client can cancel only its own session's queries, through tollgate.
type cancelKeys struct {
	mu    sync.Mutex
	byPID map[uint32][]*cancelTarget // the same pid may exist on two servers
}

func newCancelKeys() *cancelKeys {
	return &cancelKeys{byPID: map[uint32][]*cancelTarget{}}
}

// add registers a session's key and returns the secret for the client:
// 4 bytes for protocol 3.0, 32 for 3.2 (as PostgreSQL 18 does).
func (k *cancelKeys) add(t *cancelTarget, minor uint32) []byte {
	n := 4
	if minor >= 2 {
		n = 32
	}
	t.clientKey = make([]byte, n)
	rand.Read(t.clientKey)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.byPID[t.pid] = append(k.byPID[t.pid], t)
	return t.clientKey
}

// remove forgets a session's key.
func (k *cancelKeys) remove(t *cancelTarget) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ts := k.byPID[t.pid]
	for i, x := range ts {
		if x == t {
			ts = append(ts[:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(k.byPID, t.pid)
	} else {
		k.byPID[t.pid] = ts
	}
}

// lookup finds the session a client's cancel key belongs to, comparing
// secrets in constant time.
func (k *cancelKeys) lookup(pid uint32, key []byte) *cancelTarget {
	k.mu.Lock()
	defer k.mu.Unlock()
	var found *cancelTarget
	for _, t := range k.byPID[pid] {
		if len(t.clientKey) == len(key) && subtle.ConstantTimeCompare(t.clientKey, key) == 1 {
			found = t
		}
	}
	return found
}
