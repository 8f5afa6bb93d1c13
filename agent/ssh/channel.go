// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// chunkSize is the most bytes of a channel one channel.data record holds.
const chunkSize = 32 << 10

// channel serves one channel the client opens.
func (c *session) channel(nc ssh.NewChannel) {
	id := strconv.FormatInt(c.nextChannel.Add(1)-1, 10)
	switch t := nc.ChannelType(); t {
	case "session":
		c.sessionChannel(nc, id)
	case "direct-tcpip":
		c.directTCPIP(nc, id)
	default:
		// Tunnels (tun@openssh.com), unix-socket forwards and whatever
		// comes next are refused until policy can name them.
		d := policy.Decision{Action: policy.ActionDeny, Reason: "channel type " + t + " is not supported"}
		c.recordOpen(id, t, "", d, "", false)
		nc.Reject(ssh.Prohibited, "tollgate: "+d.Reason)
	}
}

// schan is a session channel: a shell, a command or a subsystem.
type schan struct {
	c      *session
	id     string
	ch     ssh.Channel // toward the client
	up     ssh.Channel // toward the target
	start  time.Time
	record bool // record the channel's bytes (not for sftp, whose operations are recorded)
	sftp   *sftpLog

	mu        sync.Mutex
	exit      []*ssh.Request // exit-status / exit-signal, sent after the output
	exitState map[string]string
	refused   bool
	in, out   int64
	done      chan struct{} // closed when the channel ends
}

func (c *session) sessionChannel(nc ssh.NewChannel, id string) {
	up, upReqs, err := c.up.OpenChannel("session", nc.ExtraData())
	if err != nil {
		reason, msg := ssh.ConnectionFailed, err.Error()
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			reason, msg = oe.Reason, oe.Message
		}
		c.recordOpen(id, "session", "", policy.Decision{Action: policy.ActionAllow}, "target refused: "+msg, false)
		nc.Reject(reason, msg)
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	c.recordOpen(id, "session", "", policy.Decision{}, "", false)
	sc := &schan{c: c, id: id, ch: ch, up: up, start: time.Now(), record: true, exitState: map[string]string{},
		done: make(chan struct{})}
	defer close(sc.done)

	// The output pumps end at the target's EOF or close; the client sees
	// all output before the exit status and EOF.
	var outPumps, allPumps sync.WaitGroup
	outPumps.Add(2)
	allPumps.Add(3)
	go func() { // target stdout → client
		defer allPumps.Done()
		defer outPumps.Done()
		sc.addOut(sc.pump(ch, up, "out"))
	}()
	go func() { // target stderr → client
		defer allPumps.Done()
		defer outPumps.Done()
		sc.addOut(sc.pump(ch.Stderr(), up.Stderr(), "err"))
	}()
	go func() { // client stdin → target
		defer allPumps.Done()
		n := sc.pump(up, ch, "in")
		sc.mu.Lock()
		sc.in += n
		sc.mu.Unlock()
		up.CloseWrite()
	}()
	outputDone := make(chan struct{})
	go func() {
		outPumps.Wait()
		close(outputDone)
	}()

	var reqWG sync.WaitGroup
	reqWG.Add(1)
	go func() { // the target's requests: exit status, keepalives
		defer reqWG.Done()
		for r := range upReqs {
			switch r.Type {
			case "exit-status", "exit-signal":
				sc.noteExit(r)
			default:
				ok, _ := ch.SendRequest(r.Type, r.WantReply, r.Payload)
				if r.WantReply {
					r.Reply(ok, nil)
				}
			}
		}
		// The target closed the channel: let the output drain, then
		// pass the exit status and close.
		sc.waitOutput(outputDone)
		sc.sendExit()
		ch.CloseWrite()
		ch.Close()
	}()
	for r := range reqs {
		sc.request(r)
	}
	// The client closed the channel.
	up.Close()
	reqWG.Wait()
	allPumps.Wait()
	sc.recordClose()
}

// waitOutput waits until the output pumps reached EOF, which the target's
// close implies; the bound only guards against a client that stopped
// reading.
func (sc *schan) waitOutput(done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

func (sc *schan) addOut(n int64) {
	sc.mu.Lock()
	sc.out += n
	sc.mu.Unlock()
}

// firstBuf is the size of a pump's first buffer, which doubles up to
// chunkSize each time a read fills it: a session that waits or is typed
// into keeps three small buffers, a bulk copy soon reads whole packets.
const firstBuf = 2 << 10

// pump copies src to dst in chunks, recording each chunk of a recorded
// channel, until src ends. It returns the bytes copied.
func (sc *schan) pump(dst io.Writer, src io.Reader, stream string) int64 {
	buf := make([]byte, firstBuf)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			b := buf[:k]
			if sc.sftp != nil {
				sc.sftp.feed(stream, b)
			} else if sc.record {
				sc.c.recordData(sc.id, stream, b)
			}
			if _, werr := dst.Write(b); werr != nil {
				return n
			}
			n += int64(k)
			if stream == "in" {
				sc.c.upBytes.Add(int64(k))
			} else {
				sc.c.downBytes.Add(int64(k))
			}
			if k == len(buf) && len(buf) < chunkSize {
				buf = make([]byte, 2*len(buf))
			}
		}
		if err != nil {
			return n
		}
	}
}

// noteExit keeps the target's exit status for after the output.
func (sc *schan) noteExit(r *ssh.Request) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.exit = append(sc.exit, r)
	switch r.Type {
	case "exit-status":
		if len(r.Payload) >= 4 {
			sc.exitState[audit.DetailExitStatus] = strconv.FormatUint(uint64(binary.BigEndian.Uint32(r.Payload)), 10)
		}
	case "exit-signal":
		var sig struct {
			Signal string
			Core   bool
			Msg    string
			Lang   string
		}
		if ssh.Unmarshal(r.Payload, &sig) == nil {
			sc.exitState[audit.DetailExitSignal] = sig.Signal
		}
	}
}

func (sc *schan) sendExit() {
	sc.mu.Lock()
	ex := sc.exit
	sc.exit = nil
	sc.mu.Unlock()
	for _, r := range ex {
		sc.ch.SendRequest(r.Type, false, r.Payload)
	}
}

// request judges and forwards one request of the client on a session
// channel.
func (sc *schan) request(r *ssh.Request) {
	c := sc.c
	sc.mu.Lock()
	refused := sc.refused
	sc.mu.Unlock()
	if refused {
		reply(r, false)
		return
	}
	switch r.Type {
	case "exec":
		var p struct{ Command string }
		if err := ssh.Unmarshal(r.Payload, &p); err != nil {
			reply(r, false)
			return
		}
		req := policy.Request{Classes: []policy.Class{policy.ClassExec}}
		words, err := policy.SplitCommand(p.Command)
		if err == nil {
			req.Command = words
		}
		sc.run(r, req, p.Command, "exec")
	case "shell":
		sc.run(r, policy.Request{Classes: []policy.Class{policy.ClassShell}}, "shell", "shell")
	case "subsystem":
		var p struct{ Name string }
		if err := ssh.Unmarshal(r.Payload, &p); err != nil {
			reply(r, false)
			return
		}
		class := policy.ClassSubsystem
		if p.Name == "sftp" {
			class = policy.ClassSFTP
		}
		sc.run(r, policy.Request{Classes: []policy.Class{class}}, "subsystem "+p.Name, "subsystem")
	case "auth-agent-req@openssh.com":
		if sc.capability(r, policy.ClassAgentForward, "agent forwarding") {
			c.mu.Lock()
			c.agentOK = true
			c.mu.Unlock()
		}
	case "x11-req":
		if sc.capability(r, policy.ClassX11, "X11 forwarding") {
			c.mu.Lock()
			c.x11OK = true
			c.mu.Unlock()
		}
	case "pty-req":
		var p struct {
			Term          string
			Cols, Rows    uint32
			Width, Height uint32
			Modes         string
		}
		detail := map[string]string{audit.DetailRequest: r.Type}
		if ssh.Unmarshal(r.Payload, &p) == nil {
			detail[audit.DetailTerm] = p.Term
			detail[audit.DetailCols] = strconv.FormatUint(uint64(p.Cols), 10)
			detail[audit.DetailRows] = strconv.FormatUint(uint64(p.Rows), 10)
		}
		c.recordRequest(sc.id, detail, nil, nil, false)
		sc.forward(r)
	case "window-change":
		var p struct{ Cols, Rows, Width, Height uint32 }
		if ssh.Unmarshal(r.Payload, &p) == nil {
			c.recordRequest(sc.id, map[string]string{audit.DetailRequest: r.Type, audit.DetailCols: strconv.FormatUint(uint64(p.Cols), 10),
				audit.DetailRows: strconv.FormatUint(uint64(p.Rows), 10)}, nil, nil, false)
		}
		sc.forward(r)
	case "env":
		var p struct{ Name, Value string }
		if ssh.Unmarshal(r.Payload, &p) == nil {
			// The value may be a secret: its name is evidence enough.
			c.recordRequest(sc.id, map[string]string{audit.DetailRequest: r.Type, "name": p.Name}, nil, nil, false)
		}
		sc.forward(r)
	case "signal", "break", "keepalive@openssh.com", "eow@openssh.com":
		sc.forward(r)
	default:
		d := policy.Decision{Action: policy.ActionDeny, Reason: "request " + r.Type + " is not supported"}
		_, hash := c.s.opts.Policy.Current()
		c.recordRequest(sc.id, map[string]string{audit.DetailRequest: r.Type}, nil, decisionRecord(d, hash), false)
		reply(r, false)
	}
}

// forward passes a request on to the target and its answer back.
func (sc *schan) forward(r *ssh.Request) {
	ok, err := sc.up.SendRequest(r.Type, r.WantReply, r.Payload)
	if err != nil {
		ok = false
	}
	reply(r, ok)
}

func reply(r *ssh.Request, ok bool) {
	if r.WantReply {
		r.Reply(ok, nil)
	}
}

// capability judges a request that opens a path back to the client (agent,
// X11): allowed, it is recorded durably and forwarded; denied, it is
// refused as sshd refuses a disabled feature.
func (sc *schan) capability(r *ssh.Request, class policy.Class, what string) bool {
	d, hash := sc.c.decide(policy.Request{Classes: []policy.Class{class}})
	stmt := &audit.Statement{Text: what, Classes: []string{string(class)}}
	detail := map[string]string{audit.DetailRequest: r.Type}
	if d.Action != policy.ActionAllow && d.Action != policy.ActionMask {
		if d.Action == policy.ActionReview {
			d.Action, d.Reason = policy.ActionDeny, "review rules cannot hold "+what
		}
		sc.c.recordRequest(sc.id, detail, stmt, decisionRecord(d, hash), false)
		reply(r, false)
		return false
	}
	if err := sc.c.recordRequest(sc.id, detail, stmt, decisionRecord(d, hash), true); err != nil {
		sc.c.s.log.Error("ssh request refused: audit log unwritable", "session", sc.c.sess.Base.Session, "error", err)
		reply(r, false)
		sc.c.client.Close()
		return false
	}
	sc.forward(r)
	return true
}

// run judges a request that runs something on the target (exec, shell,
// subsystem): recorded durably before it is forwarded; denied, the client
// is told why on stderr and the channel ends with exit status 1, with
// nothing run on the target; a review rule holds it for approval.
func (sc *schan) run(r *ssh.Request, req policy.Request, text, kind string) {
	c := sc.c
	d, hash := c.decide(req)
	stmt := &audit.Statement{Text: text, Classes: classNames(req.Classes)}
	detail := map[string]string{audit.DetailRequest: kind}
	if d.Action == policy.ActionReview {
		d = sc.hold(req, text, d, hash, detail)
	}
	if d.Action != policy.ActionAllow && d.Action != policy.ActionMask {
		c.recordRequest(sc.id, detail, stmt, decisionRecord(d, hash), false)
		sc.refuse(r, kind, text, d)
		return
	}
	if err := c.recordRequest(sc.id, detail, stmt, decisionRecord(d, hash), true); err != nil {
		c.s.log.Error("ssh request refused: audit log unwritable", "session", c.sess.Base.Session, "error", err)
		sc.refuse(r, kind, text, policy.Decision{Action: policy.ActionDeny, Reason: "audit log unwritable"})
		c.client.Close()
		return
	}
	if req.Classes[0] == policy.ClassSFTP {
		sc.sftp = newSFTPLog(c, sc.id)
	}
	sc.forward(r)
	if strings.HasPrefix(d.Rule, "grant:") {
		go sc.watchGrant(req, d.Rule)
	}
}

// grantCheck is how often a channel that a grant allowed checks that the
// grant still holds.
const grantCheck = time.Second

// watchGrant ends a channel that a just-in-time grant allowed once the
// grant no longer allows it (expired or revoked), telling the client why:
// the grant is a time box, not a ticket to keep a shell open forever.
func (sc *schan) watchGrant(req policy.Request, rule string) {
	t := time.NewTicker(grantCheck)
	defer t.Stop()
	for {
		select {
		case <-sc.done:
			return
		case <-t.C:
		}
		d, hash := sc.c.decide(req)
		if d.Action == policy.ActionAllow || d.Action == policy.ActionMask {
			continue
		}
		id := strings.TrimPrefix(rule, "grant:")
		reason := "grant " + id + " expired or was revoked"
		d.Reason = reason
		sc.c.recordRequest(sc.id, map[string]string{audit.DetailRequest: "grant-ended", audit.DetailGrant: id},
			&audit.Statement{Text: "end of grant " + id, Classes: classNames(req.Classes)}, decisionRecord(d, hash), false)
		fmt.Fprintf(sc.ch.Stderr(), "\r\ntollgate: %s; ending this session\r\n", reason)
		sc.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
		sc.mu.Lock()
		sc.exitState[audit.DetailExitStatus] = "1"
		sc.exitState["ended_by"] = reason
		sc.mu.Unlock()
		sc.up.Close()
		sc.ch.Close()
		return
	}
}

// refuse answers a refused exec, shell or subsystem request the way a
// forced command that refuses would: the request succeeds, the reason goes
// to stderr and the channel ends with exit status 1. The client's command
// line sees a failed command with a clear message; the target saw nothing.
func (sc *schan) refuse(r *ssh.Request, kind, text string, d policy.Decision) {
	// One line per refusal, with the session id `tollgate audit replay`
	// takes (the command itself is in the records, masked).
	sc.c.s.log.Info("ssh request refused", "session", sc.c.sess.Base.Session, "target", sc.c.sess.Target.Name,
		"request", kind, "rule", d.Rule, "reason", d.Reason)
	sc.mu.Lock()
	sc.refused = true
	sc.mu.Unlock()
	msg := "tollgate: " + kind + " denied"
	if kind == "exec" {
		msg = "tollgate: command denied"
	}
	if d.Rule != "" {
		msg += " by rule " + strconv.Quote(d.Rule)
	}
	if d.Reason != "" {
		msg += ": " + d.Reason
	}
	reply(r, true)
	io.WriteString(sc.ch.Stderr(), msg+"\r\n")
	sc.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
	sc.mu.Lock()
	sc.exitState[audit.DetailExitStatus] = "1"
	sc.mu.Unlock()
	sc.ch.CloseWrite()
	sc.ch.Close()
	sc.up.Close()
}

// hold waits for approval of a request a review rule matched, telling the
// client on stderr which approval it waits for; it returns the final
// decision.
func (sc *schan) hold(req policy.Request, text string, d policy.Decision, hash string, detail map[string]string) policy.Decision {
	c := sc.c
	if c.s.opts.Approvals == nil {
		return policy.Decision{Action: policy.ActionDeny, Rule: d.Rule, Reason: "held for approval, but approvals are not served"}
	}
	// Approvers and the log see the command as masked.
	text, _ = c.masked(text)
	h := policy.Hold{Session: c.sess.Base.Session, Target: c.sess.Target.Name, Statement: text, Rule: d.Rule,
		Requester: c.person(), Approvers: *d.Approvers}
	var held policy.Hold
	v, err := c.s.opts.Approvals.Request(c.ctx, h, func(h policy.Hold) error {
		held = h
		rec := c.sess.Base
		rec.Kind = audit.KindApprovalRequest
		rec.Time = h.Created
		rec.Statement = &audit.Statement{Text: text, Classes: classNames(req.Classes)}
		rec.Decision = decisionRecord(d, hash)
		rec.Detail = map[string]string{audit.DetailApproval: h.ID, audit.DetailDeadline: h.Deadline.Format(time.RFC3339),
			audit.DetailChannel: sc.id}
		if len(h.Approvers.Groups) > 0 {
			rec.Detail[audit.DetailApproverGroups] = strings.Join(h.Approvers.Groups, ",")
		}
		if len(h.Approvers.Identities) > 0 {
			rec.Detail[audit.DetailApproverIdentities] = strings.Join(h.Approvers.Identities, ",")
		}
		if err := c.s.opts.Recorder.Record(c.ctx, &rec); err != nil {
			return fmt.Errorf("%w: %w", ErrAudit, err)
		}
		fmt.Fprintf(sc.ch.Stderr(), "tollgate: command held for approval %s (rule %q, until %s); an approver runs: tollgate approve %s\r\n",
			h.ID, d.Rule, h.Deadline.Format(time.RFC3339), h.ID)
		return nil
	})
	if err != nil {
		return policy.Decision{Action: policy.ActionDeny, Rule: d.Rule, Reason: "not held: " + err.Error()}
	}
	detail[audit.DetailApproval] = held.ID
	rec := audit.Record{Kind: audit.KindApprovalDecision, Session: c.sess.Base.Session, Target: c.sess.Base.Target,
		Dst: c.sess.Base.Dst, Time: time.Now().UTC(), Detail: map[string]string{audit.DetailApproval: held.ID}}
	out := policy.Decision{Action: policy.ActionDeny, Rule: d.Rule}
	switch {
	case v.Approved:
		out.Action, out.Reason = policy.ActionAllow, v.Reason
	case v.TimedOut:
		out.Reason = "approval " + held.ID + " timed out"
		rec.Detail[audit.DetailTimedOut] = "true"
	case v.Cancelled:
		out.Reason = "cancelled while held for approval " + held.ID
		rec.Detail[audit.DetailCancelled] = "client closed"
	default:
		by := "an approver"
		if len(v.By) > 0 {
			by = "approver " + v.By[0].Label()
		}
		out.Reason = "denied by " + by + " (approval " + held.ID + ")"
		if v.Reason != "" {
			out.Reason += ": " + v.Reason
		}
	}
	if len(v.By) > 0 {
		last := v.By[len(v.By)-1]
		rec.Identity = &audit.Identity{Name: last.Name, Issuer: last.Issuer, Subject: last.Subject, Groups: last.Groups}
		if last.Subject != "" {
			rec.Identity.Method = "oidc"
		}
		names := make([]string, len(v.By))
		for i, p := range v.By {
			names[i] = p.Label()
		}
		rec.Detail[audit.DetailApprovers] = strings.Join(names, ",")
	}
	rec.Decision = &audit.Decision{Action: string(out.Action), Rule: d.Rule, Policy: hash, Reason: v.Reason}
	if v.Approved {
		// What is forwarded next must follow its approval in the log.
		if err := c.s.opts.Recorder.Record(c.ctx, &rec); err != nil {
			return policy.Decision{Action: policy.ActionDeny, Rule: d.Rule, Reason: "audit log unwritable"}
		}
	} else {
		c.s.opts.Recorder.RecordEventually(&rec)
	}
	return out
}

func (sc *schan) recordClose() {
	c := sc.c
	r := c.sess.Base
	r.Kind = audit.KindChannelClose
	r.Time = time.Now().UTC()
	r.DurationNS = time.Since(sc.start).Nanoseconds()
	sc.mu.Lock()
	r.Bytes = &audit.Bytes{Up: uint64(sc.in), Down: uint64(sc.out)}
	r.Detail = map[string]string{audit.DetailChannel: sc.id}
	for k, v := range sc.exitState {
		r.Detail[k] = v
	}
	sc.mu.Unlock()
	if sc.sftp != nil {
		sc.sftp.flush()
	}
	c.s.opts.Recorder.RecordEventually(&r)
}

// recordOpen records a channel's opening, durably when it was judged and
// allowed (a forward), else eventually.
func (c *session) recordOpen(id, typ, dst string, d policy.Decision, errMsg string, durable bool) error {
	r := c.sess.Base
	r.Kind = audit.KindChannelOpen
	r.Time = time.Now().UTC()
	r.Detail = map[string]string{audit.DetailChannel: id, "type": typ}
	if dst != "" {
		r.Detail["forward"] = dst
	}
	if d.Action != "" {
		_, hash := c.s.opts.Policy.Current()
		r.Decision = decisionRecord(d, hash)
	}
	r.Error = errMsg
	return c.emit(&r, durable)
}

// recordRequest records a channel request (id "" for a global request).
func (c *session) recordRequest(id string, detail map[string]string, stmt *audit.Statement, d *audit.Decision, durable bool) error {
	r := c.sess.Base
	r.Kind = audit.KindChannelRequest
	r.Time = time.Now().UTC()
	r.Detail = detail
	if id != "" {
		detail[audit.DetailChannel] = id
	}
	if stmt != nil {
		if text, n := c.masked(stmt.Text); n > 0 {
			stmt.Text = text
			detail[audit.DetailMasked] = strconv.Itoa(n)
		}
	}
	r.Statement = stmt
	r.Decision = d
	return c.emit(&r, durable)
}

// emit appends r: durably (before what it records is forwarded), or
// eventually (for what already happened).
func (c *session) emit(r *audit.Record, durable bool) error {
	if !durable {
		c.s.opts.Recorder.RecordEventually(r)
		return nil
	}
	if err := c.s.opts.Recorder.Record(c.ctx, r); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	return nil
}

// recordData records a chunk of a channel's bytes as it passes.
func (c *session) recordData(id, stream string, b []byte) {
	r := c.sess.Base
	r.Kind = audit.KindChannelData
	r.Time = time.Now().UTC()
	r.Process, r.Identity, r.Client, r.Listener = nil, nil, "", ""
	r.Detail = map[string]string{audit.DetailChannel: id, audit.DetailStream: stream}
	if text, n := c.masked(string(b)); n > 0 {
		b = []byte(text)
		r.Detail[audit.DetailMasked] = strconv.Itoa(n)
	}
	r.Detail[audit.DetailData] = base64.StdEncoding.EncodeToString(b)
	c.s.opts.Recorder.RecordEventually(&r)
}

func decisionRecord(d policy.Decision, hash string) *audit.Decision {
	return &audit.Decision{Action: string(d.Action), Rule: d.Rule, Policy: hash, Reason: d.Reason}
}

func classNames(cs []policy.Class) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}
