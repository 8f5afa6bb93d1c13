// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/redirect"
	"golang.org/x/sys/unix"
)

// Check is one host readiness check, with how to fix a failure.
type Check struct {
	Name string
	Err  error
	Fix  string
	// Warn marks a check whose failure is a known limit to act on, not
	// something that stops the daemon: doctor reports it without failing.
	Warn bool
}

// minKernel is the oldest kernel whose cgroup sock_addr programs have every
// helper the redirect programs call (bpf_getsockopt arrived in 5.8).
var minKernel = [2]int{5, 8}

// KernelChecks probes the running kernel for what the redirect programs
// need. Probing loads tiny programs, so it needs root.
func KernelChecks() []Check {
	var out []Check
	var uts unix.Utsname
	rel := ""
	if err := unix.Uname(&uts); err == nil {
		rel = unix.ByteSliceToString(uts.Release[:])
	}
	out = append(out, Check{Name: "kernel " + rel + " >= 5.8", Err: kernelAtLeast(rel, minKernel), Fix: "upgrade the kernel to 5.8 or newer"})
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	out = append(out, Check{Name: "kernel BTF (/sys/kernel/btf/vmlinux)", Err: err, Fix: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"})

	fix := "run as root on a kernel with CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF"
	out = append(out, Check{Name: "program type cgroup/sock_addr", Err: features.HaveProgramType(ebpf.CGroupSockAddr), Fix: fix})
	out = append(out, Check{Name: "program type sockops", Err: features.HaveProgramType(ebpf.SockOps), Fix: fix})
	out = append(out, Check{Name: "map type LPM trie", Err: features.HaveMapType(ebpf.LPMTrie), Fix: fix})
	out = append(out, Check{Name: "map type LRU hash", Err: features.HaveMapType(ebpf.LRUHash), Fix: fix})
	for _, h := range []struct {
		name string
		pt   ebpf.ProgramType
		fn   asm.BuiltinFunc
	}{
		{"helper bpf_getsockopt in sock_addr", ebpf.CGroupSockAddr, asm.FnGetsockopt},
		{"helper bpf_get_current_ancestor_cgroup_id in sock_addr", ebpf.CGroupSockAddr, asm.FnGetCurrentAncestorCgroupId},
		{"helper bpf_get_netns_cookie in sock_addr", ebpf.CGroupSockAddr, asm.FnGetNetnsCookie},
		{"helper bpf_get_socket_cookie in sockops", ebpf.SockOps, asm.FnGetSocketCookie},
	} {
		out = append(out, Check{Name: h.name, Err: features.HaveProgramHelper(h.pt, h.fn), Fix: "upgrade the kernel to 5.8 or newer"})
	}
	// Only unix: targets need it; TCP interception works without.
	var uerr error
	if !redirect.UnixSupported() {
		uerr = redirect.ErrNoUnix
	}
	out = append(out, Check{Name: "cgroup/connect_unix and bpf_sock_addr_set_sun_path (unix: targets)", Err: uerr,
		Fix: "upgrade the kernel to 6.7 or newer to protect unix sockets", Warn: true})
	return out
}

func kernelAtLeast(release string, min [2]int) error {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("cannot parse kernel release %q", release)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return fmt.Errorf("cannot parse kernel release %q", release)
	}
	if major < min[0] || major == min[0] && minor < min[1] {
		return fmt.Errorf("kernel %s is older than %d.%d", release, min[0], min[1])
	}
	return nil
}

// HostChecks checks mounts, capabilities and the config file.
func HostChecks(configPath string) []Check {
	var out []Check
	root, err := redirect.FindCgroup2()
	out = append(out, Check{Name: "cgroup2 mounted (" + root + ")", Err: err,
		Fix: "mount it: mount -t cgroup2 none /sys/fs/cgroup (or boot with systemd.unified_cgroup_hierarchy=1)"})

	caps, err := effectiveCaps()
	for _, c := range redirect.Capabilities {
		cerr := err
		if err == nil && caps&(1<<uint(c.Value)) == 0 {
			cerr = errors.New("missing")
		}
		out = append(out, Check{Name: "capability " + c.Name, Err: cerr, Fix: "run the daemon as root (the systemd unit does)"})
	}

	cfg, cfgErr := policy.Load(configPath)
	cfgFix := "fix the config; the message names the key and line"
	if errors.Is(cfgErr, os.ErrNotExist) {
		cfgFix = "create " + configPath + " (see the README's config reference) or pass --config FILE"
	}
	out = append(out, Check{Name: "config " + configPath, Err: cfgErr, Fix: cfgFix})
	pin := policy.Default().BPFPinPath
	if cfgErr == nil {
		pin = cfg.BPFPinPath
		if root != "" {
			wls, werr := resolveWorkloads(root, cfg.Workloads, true)
			out = append(out, Check{Name: "workload cgroups exist", Err: werr, Fix: "create the cgroup or fix the workload's cgroup path"})
			out = append(out, Check{Name: "no process of a workload's uid outside it (ptrace)", Err: ptraceExposure(wls, ptraceScope()), Warn: true,
				Fix: "select the workload by uid, run it under a uid nothing else uses, or set kernel.yama.ptrace_scope=2 (see docs/THREAT-MODEL.md)"})
		}
		if err := unixSocketExposure(cfg); err != errNoUnixTargets {
			out = append(out, Check{Name: "protected unix sockets reachable only under their path", Err: err, Warn: true,
				Fix: "chmod o-x the socket's directory (e.g. 0750 with the group of the server's other local clients): a workload can otherwise reach the socket under another name, a symlink or a relative path, unrecorded (see docs/THREAT-MODEL.md)"})
		}
		var rerr error
		if !RetentionEnforced(cfg) {
			rerr = errors.New("not without audit.ship: nothing is pruned before a collector cosigned it, so the log keeps growing")
		}
		out = append(out, Check{Name: fmt.Sprintf("audit.retention %s enforced", cfg.Audit.Retention), Err: rerr, Warn: true,
			Fix: "set audit.ship to a collector (records it cosigned are then pruned after audit.retention), or watch state_dir's free space"})
		werr := dirWritable(cfg.StateDir)
		out = append(out, Check{Name: "state_dir " + cfg.StateDir + " writable", Err: werr, Fix: "create it as root with mode 0700"})
		if werr == nil {
			out = append(out, Check{Name: "state_dir free space", Err: stateDirSpace(cfg.StateDir),
				Fix: "free space on its file system or move state_dir: when the audit log cannot grow, new sessions are refused"})
		}
	}
	parent := filepath.Dir(pin)
	var bpffsErr error
	if !redirect.IsBPFFS(parent) {
		bpffsErr = fmt.Errorf("%s is not a bpf filesystem (the daemon mounts one there at start)", parent)
	}
	out = append(out, Check{Name: "bpffs at " + parent, Err: bpffsErr, Fix: "mount -t bpf bpf " + parent})
	out = append(out, Check{Name: "pin path " + pin + " is root's alone", Err: redirect.CheckPinPath(pin),
		Fix: "the daemon refuses to start: remove the directory (another user may have created it first; run `tollgate uninstall` if it holds tollgate's pins) and restart the daemon, or chmod go-w / chown root it"})
	var v6err error
	if !ipv6Loopback() {
		v6err = errors.New("cannot listen on [::1]")
	}
	out = append(out, Check{Name: "IPv6 loopback", Err: v6err, Fix: "enable IPv6 on lo (sysctl net.ipv6.conf.lo.disable_ipv6=0) or IPv6 clients of targets are refused"})
	return out
}

// errNoUnixTargets means the config protects no unix socket: nothing to
// check.
var errNoUnixTargets = errors.New("no unix targets")

// unixSocketExposure reports the protected sockets whose directory others
// may search. The programs match the path as the client spells it; another
// name for the socket resolves to it, and only the directory's permissions
// stop that (see docs/THREAT-MODEL.md).
func unixSocketExposure(cfg policy.Config) error {
	var errs []error
	found := false
	for _, t := range cfg.Targets {
		ms, _ := t.Matches()
		for _, m := range ms {
			if m.Socket == "" {
				continue
			}
			found = true
			dir := filepath.Dir(m.Socket)
			st, err := os.Stat(dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("target %q: %w", t.Name, err))
				continue
			}
			if st.Mode().Perm()&0o001 != 0 {
				errs = append(errs, fmt.Errorf("target %q: %s has mode %04o: any user can reach %s under another name",
					t.Name, dir, st.Mode().Perm(), filepath.Base(m.Socket)))
			}
		}
	}
	if !found {
		return errNoUnixTargets
	}
	return errors.Join(errs...)
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// minStateFree is the free space doctor wants in state_dir besides the
// journal: room for the audit log file to grow.
const minStateFree = 64 << 20

// stateDirSpace checks that state_dir's file system has room for the audit
// journal, which the daemon creates at its first start, and for the log.
func stateDirSpace(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	_, err := os.Stat(filepath.Join(dir, LogFile+audit.JournalSuffix))
	return checkSpace(uint64(st.Bavail)*uint64(st.Bsize), err == nil)
}

// checkSpace says whether free bytes are enough, given whether the journal
// exists already.
func checkSpace(free uint64, journal bool) error {
	need := uint64(minStateFree)
	if !journal {
		need += audit.DefaultJournalSize
	}
	if free < need {
		return fmt.Errorf("%d MiB free, want at least %d MiB (the audit journal takes %d MiB at the first start, and the log grows with every record)",
			free>>20, need>>20, audit.DefaultJournalSize>>20)
	}
	return nil
}

func dirWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// ptraceScope returns kernel.yama.ptrace_scope, or 0 (classic ptrace: any
// process of the same uid) when Yama is not built in.
func ptraceScope() int {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// ptraceExposure reports the cgroup workloads whose processes' uids also
// run processes outside the workload. With ptrace_scope below 2 a workload
// process may ptrace (or pidfd_getfd a socket of) such a process and make
// it connect from outside the intercepted cgroup.
func ptraceExposure(wls []workloadState, scope int) error {
	if scope >= 2 {
		return nil
	}
	type proc struct {
		pid    string
		uid    string
		cgroup string
	}
	var procs []proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if strings.Trim(e.Name(), "0123456789") != "" {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue // exited meanwhile
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		p := proc{pid: e.Name()}
		for _, l := range strings.Split(string(cg), "\n") {
			if v, ok := strings.CutPrefix(l, "0::"); ok {
				p.cgroup = v
			}
		}
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					p.uid = f[0]
				}
			}
		}
		if p.uid != "" && p.cgroup != "" {
			procs = append(procs, p)
		}
	}
	var problems []string
	for _, w := range wls {
		if w.Cgroup == "" {
			continue // uid workloads cover every process of the uid
		}
		inside := func(cg string) bool {
			return cg == w.Cgroup || strings.HasPrefix(cg, strings.TrimSuffix(w.Cgroup, "/")+"/")
		}
		uids := map[string]bool{}
		for _, p := range procs {
			if inside(p.cgroup) {
				uids[p.uid] = true
			}
		}
		for _, p := range procs {
			if uids[p.uid] && !inside(p.cgroup) {
				problems = append(problems, fmt.Sprintf("workload %q: uid %s also runs pid %s in %s", w.Name, p.uid, p.pid, p.cgroup))
				break
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("kernel.yama.ptrace_scope is %d (< 2) and %s", scope, strings.Join(problems, "; "))
}
