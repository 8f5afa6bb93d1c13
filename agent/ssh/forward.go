// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
)

// forwardPayload is the extra data of direct-tcpip and forwarded-tcpip
// channels (RFC 4254 7.2).
type forwardPayload struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// directTCPIP judges a connection the client forwards through the target
// (ssh -L, -D, -W). Only a rule that names the class and the destination
// allows it.
func (c *session) directTCPIP(nc ssh.NewChannel, id string) {
	var p forwardPayload
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	dst := net.JoinHostPort(p.Host, strconv.FormatUint(uint64(p.Port), 10))
	d, _ := c.decide(policy.Request{Classes: []policy.Class{policy.ClassForwardLocal}, Forward: dst})
	if d.Action != policy.ActionAllow && d.Action != policy.ActionMask {
		if d.Action == policy.ActionReview {
			d.Action, d.Reason = policy.ActionDeny, "review rules cannot hold port forwarding"
		}
		c.recordOpen(id, nc.ChannelType(), dst, d, "", false)
		c.s.log.Info("ssh forward refused", "session", c.sess.Base.Session, "target", c.sess.Target.Name, "forward", dst, "reason", reasonOf(d))
		nc.Reject(ssh.Prohibited, "tollgate: port forwarding to "+dst+" denied: "+reasonOf(d))
		return
	}
	if err := c.recordOpen(id, nc.ChannelType(), dst, d, "", true); err != nil {
		nc.Reject(ssh.Prohibited, "tollgate: audit log unwritable")
		c.client.Close()
		return
	}
	up, upReqs, err := c.up.OpenChannel(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		reason, msg := ssh.ConnectionFailed, err.Error()
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			reason, msg = oe.Reason, oe.Message
		}
		nc.Reject(reason, msg)
		c.recordChannelEnd(id, 0, 0, time.Now(), "target refused: "+msg)
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	start := time.Now()
	in, out := c.pipe(ch, reqs, up, upReqs)
	c.recordChannelEnd(id, in, out, start, "")
}

// globalRequests judges the client's connection-level requests: remote
// port forwarding needs a rule that names it; keepalives and the like pass
// to the target; anything else is refused.
func (c *session) globalRequests(reqs <-chan *ssh.Request) {
	for r := range reqs {
		switch r.Type {
		case "tcpip-forward":
			c.remoteForward(r)
		case "cancel-tcpip-forward", "keepalive@openssh.com", "no-more-sessions@openssh.com":
			ok, payload, err := c.up.SendRequest(r.Type, r.WantReply, r.Payload)
			if r.WantReply {
				r.Reply(ok && err == nil, payload)
			}
		default:
			// hostkeys-prove-00@openssh.com would ask the target to prove
			// keys the client never saw; streamlocal forwards have no
			// policy yet.
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}
}

// remoteForward judges ssh -R: the target listens and sends connections
// back through the proxy, so it is a path into the client's network.
func (c *session) remoteForward(r *ssh.Request) {
	var p struct {
		Addr string
		Port uint32
	}
	if err := ssh.Unmarshal(r.Payload, &p); err != nil {
		reply(r, false)
		return
	}
	dst := net.JoinHostPort(p.Addr, strconv.FormatUint(uint64(p.Port), 10))
	d, hash := c.decide(policy.Request{Classes: []policy.Class{policy.ClassForwardRemote}, Forward: dst})
	stmt := &audit.Statement{Text: "remote forward " + dst, Classes: []string{string(policy.ClassForwardRemote)}}
	detail := map[string]string{audit.DetailRequest: r.Type, "forward": dst}
	if d.Action != policy.ActionAllow && d.Action != policy.ActionMask {
		if d.Action == policy.ActionReview {
			d.Action, d.Reason = policy.ActionDeny, "review rules cannot hold port forwarding"
		}
		c.recordRequest("", detail, stmt, decisionRecord(d, hash), false)
		reply(r, false)
		return
	}
	if err := c.recordRequest("", detail, stmt, decisionRecord(d, hash), true); err != nil {
		reply(r, false)
		c.client.Close()
		return
	}
	ok, payload, err := c.up.SendRequest(r.Type, r.WantReply, r.Payload)
	if err != nil {
		ok = false
	}
	if ok {
		port := p.Port
		if port == 0 && len(payload) >= 4 {
			// The target chose the port; connections name it.
			var got struct{ Port uint32 }
			if ssh.Unmarshal(payload, &got) == nil {
				port = got.Port
			}
		}
		c.mu.Lock()
		c.remoteFwds[net.JoinHostPort(p.Addr, strconv.FormatUint(uint64(port), 10))] = true
		c.mu.Unlock()
	}
	if r.WantReply {
		r.Reply(ok, payload)
	}
}

// upstreamChannels relays the channels the target opens toward the client,
// each only when the client asked for it and policy allowed it: forwarded
// ports, the agent, X11. Anything else is refused.
func (c *session) upstreamChannels(chans <-chan ssh.NewChannel) {
	for nc := range chans {
		allowed := false
		dst := ""
		c.mu.Lock()
		switch nc.ChannelType() {
		case "forwarded-tcpip":
			var p forwardPayload
			if ssh.Unmarshal(nc.ExtraData(), &p) == nil {
				dst = net.JoinHostPort(p.Host, strconv.FormatUint(uint64(p.Port), 10))
				allowed = c.remoteFwds[dst]
			}
		case "auth-agent@openssh.com":
			allowed = c.agentOK
		case "x11":
			allowed = c.x11OK
		}
		c.mu.Unlock()
		id := strconv.FormatInt(c.nextChannel.Add(1)-1, 10)
		if !allowed {
			d := policy.Decision{Action: policy.ActionDeny, Reason: "the target opened a " + nc.ChannelType() + " channel nobody allowed"}
			c.recordOpen(id, nc.ChannelType(), dst, d, "", false)
			nc.Reject(ssh.Prohibited, "not allowed")
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.recordOpen(id, nc.ChannelType(), dst, policy.Decision{}, "", false)
			ch, reqs, err := c.client.OpenChannel(nc.ChannelType(), nc.ExtraData())
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				c.recordChannelEnd(id, 0, 0, time.Now(), "client refused: "+err.Error())
				return
			}
			up, upReqs, err := nc.Accept()
			if err != nil {
				ch.Close()
				return
			}
			start := time.Now()
			out, in := c.pipe(up, upReqs, ch, reqs)
			c.recordChannelEnd(id, in, out, start, "")
		}()
	}
}

// pipe relays two channels' bytes both ways until both are done, passing
// EOF across, and refuses requests on them (a forwarded connection has
// none). It returns the bytes from a to b and from b to a.
func (c *session) pipe(a ssh.Channel, aReqs <-chan *ssh.Request, b ssh.Channel, bReqs <-chan *ssh.Request) (ab, ba int64) {
	go ssh.DiscardRequests(aReqs)
	go ssh.DiscardRequests(bReqs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		ab, _ = io.Copy(b, a)
		b.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		ba, _ = io.Copy(a, b)
		a.CloseWrite()
	}()
	wg.Wait()
	a.Close()
	b.Close()
	c.upBytes.Add(ab)
	c.downBytes.Add(ba)
	return ab, ba
}

// recordChannelEnd records the end of a forwarded channel.
func (c *session) recordChannelEnd(id string, in, out int64, start time.Time, errMsg string) {
	r := c.sess.Base
	r.Kind = audit.KindChannelClose
	r.Time = time.Now().UTC()
	r.DurationNS = time.Since(start).Nanoseconds()
	r.Bytes = &audit.Bytes{Up: uint64(in), Down: uint64(out)}
	r.Detail = map[string]string{audit.DetailChannel: id}
	r.Error = errMsg
	c.s.opts.Recorder.RecordEventually(&r)
}

func reasonOf(d policy.Decision) string {
	if d.Reason != "" {
		return d.Reason
	}
	return "denied by rule " + d.Rule
}
