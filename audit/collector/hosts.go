// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// HostStatus is one row of the fleet view.
type HostStatus struct {
	Name     string    `json:"name"`
	Origin   string    `json:"origin"`
	Enrolled time.Time `json:"enrolled"`
	// Size is how many records of the log the collector holds.
	Size uint64 `json:"size"`
	// Cosigned is the size of the newest checkpoint the collector cosigned.
	Cosigned uint64 `json:"cosigned"`
	// LastCheckpoint is when the host signed that checkpoint (its clock).
	LastCheckpoint *time.Time `json:"last_checkpoint,omitempty"`
	// LastSeen is when the collector last accepted a request of the host.
	LastSeen time.Time `json:"last_seen"`
	// Lag is how far the collector's view is behind now: now minus the
	// newest cosigned checkpoint's signing time.
	Lag time.Duration `json:"lag_ns"`
	// Silent is set while the host is flagged silent.
	Silent      bool   `json:"silent"`
	Halted      string `json:"halted,omitempty"`
	Misbehavior int    `json:"misbehavior"`
}

// Misbehavior is one recorded finding.
type Misbehavior struct {
	Origin     string    `json:"origin"`
	Kind       string    `json:"kind"`
	Detail     string    `json:"detail"`
	DetectedAt time.Time `json:"detected_at"`
	// Stored and New are the signed checkpoints that prove it, when it is
	// a proof (fork, rollback).
	Stored []byte `json:"stored_checkpoint,omitempty"`
	New    []byte `json:"new_checkpoint,omitempty"`
}

// Hosts returns the fleet view, by host name.
func (s *Store) Hosts(ctx context.Context) ([]HostStatus, error) {
	rows, err := s.pool.Query(ctx, `SELECT h.name, h.origin, h.enrolled_at, l.size,
			coalesce((SELECT max(size) FROM checkpoints c WHERE c.origin = h.origin), 0),
			l.last_seen, l.silent_since IS NOT NULL, coalesce(l.halted, ''),
			(SELECT count(*) FROM misbehavior m WHERE m.origin = h.origin), l.checkpoint, h.public_key
		FROM hosts h JOIN log_state l ON l.origin = h.origin ORDER BY h.name`)
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	defer rows.Close()
	var out []HostStatus
	now := time.Now()
	for rows.Next() {
		var h HostStatus
		var size, cosigned int64
		var cp []byte
		var key string
		if err := rows.Scan(&h.Name, &h.Origin, &h.Enrolled, &size, &cosigned, &h.LastSeen, &h.Silent, &h.Halted, &h.Misbehavior, &cp, &key); err != nil {
			return nil, fmt.Errorf("hosts: %w", err)
		}
		h.Size, h.Cosigned = uint64(size), uint64(cosigned)
		if cp != nil {
			if v, err := audit.ParseVerifierKey(key); err == nil {
				if c, err := audit.OpenCheckpoint(cp, v); err == nil {
					h.LastCheckpoint = &c.Time
					h.Lag = now.Sub(c.Time)
				}
			}
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	return out, nil
}

// MisbehaviorOf returns the findings of one log (all logs if origin is
// empty), oldest first.
func (s *Store) MisbehaviorOf(ctx context.Context, origin string) ([]Misbehavior, error) {
	rows, err := s.pool.Query(ctx, `SELECT origin, kind, detail, detected_at, stored_checkpoint, new_checkpoint
		FROM misbehavior WHERE $1 = '' OR origin = $1 ORDER BY id`, origin)
	if err != nil {
		return nil, fmt.Errorf("misbehavior: %w", err)
	}
	defer rows.Close()
	var out []Misbehavior
	for rows.Next() {
		var m Misbehavior
		if err := rows.Scan(&m.Origin, &m.Kind, &m.Detail, &m.DetectedAt, &m.Stored, &m.New); err != nil {
			return nil, fmt.Errorf("misbehavior: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
