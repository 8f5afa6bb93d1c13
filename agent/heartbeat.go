// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tollgate-dev/tollgate/audit"
)

// HeartbeatInterval is how often the daemon writes a heartbeat record, even
// when idle: the evidence that it was running, with what config, and
// whether the clock that timestamps every record was synchronised
// (ISO/IEC 27001:2022 A.8.16, A.8.17).
const HeartbeatInterval = 60 * time.Second

// clockState is the kernel's view of clock synchronisation.
type clockState struct {
	synchronised bool
	maxErrorUS   int64
	estErrorUS   int64
	offsetNS     int64
	status       int32
	state        int
}

// readClock reads the clock state with adjtimex(2) in read-only mode
// (modes 0), which needs no privilege.
func readClock() (clockState, error) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return clockState{}, fmt.Errorf("adjtimex: %w", err)
	}
	offset := tx.Offset
	if tx.Status&unix.STA_NANO == 0 {
		offset *= 1000 // microseconds unless STA_NANO
	}
	return clockState{
		synchronised: state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0,
		maxErrorUS:   tx.Maxerror,
		estErrorUS:   tx.Esterror,
		offsetNS:     offset,
		status:       tx.Status,
		state:        state,
	}, nil
}

// heartbeatRecord builds a heartbeat record from the clock state.
func heartbeatRecord(cs clockState, clockErr error, cfgHash, version string) *audit.Record {
	d := map[string]string{
		audit.DetailConfig:   cfgHash,
		audit.DetailVersion:  version,
		audit.DetailInterval: HeartbeatInterval.String(),
	}
	if clockErr != nil {
		d[audit.DetailClockSync] = "unknown"
		return &audit.Record{Kind: audit.KindHeartbeat, Error: clockErr.Error(), Detail: d}
	}
	d[audit.DetailClockSync] = "unsynchronised"
	if cs.synchronised {
		d[audit.DetailClockSync] = "synchronised"
	}
	d[audit.DetailClockMaxError] = strconv.FormatInt(cs.maxErrorUS, 10)
	d[audit.DetailClockEstError] = strconv.FormatInt(cs.estErrorUS, 10)
	d[audit.DetailClockOffset] = strconv.FormatInt(cs.offsetNS, 10)
	d[audit.DetailClockStatus] = fmt.Sprintf("%#x", cs.status)
	d[audit.DetailClockState] = strconv.Itoa(cs.state)
	return &audit.Record{Kind: audit.KindHeartbeat, Detail: d}
}

// heartbeat writes one heartbeat record. A heartbeat that cannot be written
// is not kept for later: the next one says the same, and the failure is in
// status and the operational log.
func (a *Agent) heartbeat() {
	cs, err := readClock()
	a.mu.Lock()
	hash := a.cfgHash
	a.mu.Unlock()
	rec := heartbeatRecord(cs, err, hash, a.opts.Version)
	// The log itself says what retention removed, so a bundle's reader
	// learns it from signed records, not only from the host's status.
	if p := a.alog.Pruned(); p.Below > 0 {
		rec.Detail[audit.DetailPrunedBelow] = strconv.FormatUint(p.Below, 10)
	}
	if err := a.record(rec); err != nil {
		a.log.Warn("heartbeat not recorded", "error", err)
	}
}

// heartbeatLoop writes a heartbeat now and every HeartbeatInterval until
// ctx ends.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	a.heartbeat()
	tick := time.NewTicker(HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.heartbeat()
		}
	}
}
