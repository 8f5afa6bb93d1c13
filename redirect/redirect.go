// SPDX-License-Identifier: Apache-2.0

// Package redirect owns tollgate's eBPF programs: it loads them, attaches them
// at the cgroup2 root, pins links and maps in bpffs so that enforcement
// outlives the daemon (fail closed), swaps programs in place on upgrade, and
// answers the proxy's question "where was this accepted connection going, and
// who opened it?" with Lookup.
//
// The programs (bpf/redirect.c) rewrite TCP connects of intercepted workloads
// to protected targets so they reach the target's local listener. A workload
// is a cgroup v2 subtree or a uid; a target is a CIDR and a port.
package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Errors returned by the redirector.
var (
	// ErrNoOrigin means the kernel holds no origin for a peer address: the
	// connection was not redirected by tollgate, or its entry was already
	// taken or evicted. The proxy must close such a connection.
	ErrNoOrigin = errors.New("no origin for peer")
	// ErrNotLoaded means nothing is pinned at the pin path.
	ErrNotLoaded = errors.New("redirect programs not loaded")
)

// DefaultMark is the SO_MARK carried by every socket the daemon opens. The
// programs never redirect a marked socket, so the proxy's upstream
// connections go where they are addressed. Setting a mark needs
// CAP_NET_ADMIN, so an ordinary workload cannot forge it.
const DefaultMark = 0x746f6c6c // "toll"

// Capability is a Linux capability the redirector needs.
type Capability struct {
	Name  string
	Value int
}

// Capabilities lists what Load, Unload and Lookup need: BPF and PERFMON to
// load programs, NET_ADMIN to attach cgroup programs and set SO_MARK,
// SYS_ADMIN to mount bpffs and to read other processes' cgroups.
var Capabilities = []Capability{
	{"CAP_BPF", unix.CAP_BPF},
	{"CAP_PERFMON", unix.CAP_PERFMON},
	{"CAP_NET_ADMIN", unix.CAP_NET_ADMIN},
	{"CAP_SYS_ADMIN", unix.CAP_SYS_ADMIN},
}

// Options configure Load.
type Options struct {
	// PinPath is the bpffs directory that holds the pinned links and maps,
	// for example /sys/fs/bpf/tollgate.
	PinPath string
	// CgroupRoot is the cgroup2 mount the programs attach to; empty means
	// found from /proc/mounts.
	CgroupRoot string
	// Mark is the SO_MARK of the daemon's sockets; zero means DefaultMark.
	Mark uint32
	// ListenIP is the IPv4 loopback address the proxy listens on.
	ListenIP netip.Addr
	// AnyNetNS intercepts in every network namespace. By default only the
	// daemon's own namespace is intercepted, because rewriting to
	// 127.0.0.1 inside another namespace would reach that namespace's
	// loopback, not the proxy.
	AnyNetNS bool
	// Logger receives lifecycle messages.
	Logger *slog.Logger
}

// Redirector holds the loaded programs, their links and maps.
type Redirector struct {
	log     *slog.Logger
	pinPath string
	objs    redirectObjects
	links   []link.Link
	// attached are the sections of links, in order.
	attached []string
	unix     bool // the kernel redirects unix sockets; their programs are attached

	mu sync.Mutex // serialises map rewrites
}

var attachments = []struct {
	name    string // pin name under links/
	section string // the program's ELF section, as operators know it
	attach  ebpf.AttachType
	prog    func(*redirectObjects) *ebpf.Program
}{
	{"connect4", "cgroup/connect4", ebpf.AttachCGroupInet4Connect, func(o *redirectObjects) *ebpf.Program { return o.TollgateConnect4 }},
	{"connect6", "cgroup/connect6", ebpf.AttachCGroupInet6Connect, func(o *redirectObjects) *ebpf.Program { return o.TollgateConnect6 }},
	{"sockops", "sockops", ebpf.AttachCGroupSockOps, func(o *redirectObjects) *ebpf.Program { return o.TollgateSockops }},
	{"connect_unix", "cgroup/connect_unix", ebpf.AttachCgroupUnixConnect, func(o *redirectObjects) *ebpf.Program { return o.TollgateConnectUnix }},
	{"getpeername_unix", "cgroup/getpeername_unix", ebpf.AttachCgroupUnixGetpeername, func(o *redirectObjects) *ebpf.Program { return o.TollgateGetpeernameUnix }},
	{"cgroup_mkdir", "tp_btf/cgroup_mkdir", ebpf.AttachTraceRawTp, func(o *redirectObjects) *ebpf.Program { return o.TollgateCgroupMkdir }},
	{"cgroup_rmdir", "tp_btf/cgroup_rmdir", ebpf.AttachTraceRawTp, func(o *redirectObjects) *ebpf.Program { return o.TollgateCgroupRmdir }},
}

// Attached returns the programs this redirector holds attached, by ELF
// section name.
func (r *Redirector) Attached() []string {
	return slices.Clone(r.attached)
}

// Load loads the programs, reusing maps already pinned under opts.PinPath,
// and attaches them at the cgroup2 root. Links already pinned there (from an
// earlier run) are updated in place with the new programs, so interception
// never has a gap during a restart or upgrade.
func Load(opts Options) (_ *Redirector, err error) {
	if opts.PinPath == "" {
		return nil, errors.New("load redirect: empty pin path")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Mark == 0 {
		opts.Mark = DefaultMark
	}
	if !opts.ListenIP.Is4() || !opts.ListenIP.IsLoopback() {
		return nil, fmt.Errorf("load redirect: listen address %s is not IPv4 loopback", opts.ListenIP)
	}
	if opts.CgroupRoot == "" {
		opts.CgroupRoot, err = FindCgroup2()
		if err != nil {
			return nil, fmt.Errorf("load redirect: %w", err)
		}
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("load redirect: remove memlock limit: %w", err)
	}
	if err := EnsureBPFFS(filepath.Dir(opts.PinPath)); err != nil {
		return nil, fmt.Errorf("load redirect: %w", err)
	}
	// The pin path must be root's alone, or a user could unlink the
	// pinned links and undo fail-closed enforcement (ErrUnsafePinPath).
	if err := preparePinPath(opts.PinPath); err != nil {
		return nil, fmt.Errorf("load redirect: %w", err)
	}
	mapDir := filepath.Join(opts.PinPath, "maps")
	linkDir := filepath.Join(opts.PinPath, "links")

	spec, err := loadRedirect()
	if err != nil {
		return nil, fmt.Errorf("load redirect: %w", err)
	}
	var cookie uint64
	if !opts.AnyNetNS {
		cookie, err = netnsCookie()
		if err != nil {
			return nil, fmt.Errorf("load redirect: %w", err)
		}
	}
	ip4 := opts.ListenIP.As4()
	vars := map[string]any{
		redirectVarTollgateMark:    opts.Mark,
		redirectVarHostNetnsCookie: cookie,
		// The program stores the address as it appears in memory, which
		// is network order: keep the bytes as they are.
		redirectVarListenIp4: nativeU32(ip4),
	}
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("load redirect: variable %s missing from object", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("load redirect: set %s: %w", name, err)
		}
	}
	for _, m := range spec.Maps {
		if m.Name == ".rodata" || m.Name == ".data" || m.Name == ".bss" {
			continue
		}
		m.Pinning = ebpf.PinByName
	}

	r := &Redirector{log: opts.Logger, pinPath: opts.PinPath, unix: UnixSupported()}
	if !r.unix {
		opts.Logger.Warn("this kernel cannot redirect unix sockets (Linux 6.7 or later can): unix targets are refused")
		stubUnixPrograms(spec)
	}
	collOpts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapDir}}
	err = spec.LoadAndAssign(&r.objs, collOpts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// A map layout changed between versions. Origins in flight are
		// lost either way; start the maps afresh rather than refuse to run.
		opts.Logger.Warn("pinned maps are incompatible, recreating them", "error", err)
		if rerr := removePinnedMaps(mapDir); rerr != nil {
			return nil, fmt.Errorf("load redirect: %w", rerr)
		}
		err = spec.LoadAndAssign(&r.objs, collOpts)
	}
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load redirect: %+v", verr)
		}
		return nil, fmt.Errorf("load redirect: %w", err)
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()

	for _, a := range attachments {
		if isUnixAttach(a.attach) && !r.unix {
			continue
		}
		attach := attachOrUpdate
		if a.attach == ebpf.AttachTraceRawTp {
			attach = attachTracing
		}
		l, err := attach(opts.CgroupRoot, filepath.Join(linkDir, a.name), a.attach, a.prog(&r.objs), opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("load redirect: %s: %w", a.name, err)
		}
		r.links = append(r.links, l)
		r.attached = append(r.attached, a.section)
	}
	return r, nil
}

func isUnixAttach(t ebpf.AttachType) bool {
	return t == ebpf.AttachCgroupUnixConnect || t == ebpf.AttachCgroupUnixGetpeername
}

// attachOrUpdate swaps the program of a pinned link, or attaches and pins a
// new link when none is pinned or the pinned one is defunct.
func attachOrUpdate(cgroup, pin string, typ ebpf.AttachType, prog *ebpf.Program, log *slog.Logger) (link.Link, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil:
		uerr := l.Update(prog)
		if uerr == nil {
			log.Debug("updated pinned link", "link", pin)
			return l, nil
		}
		if !errors.Is(uerr, unix.ENOLINK) {
			l.Close()
			return nil, fmt.Errorf("update pinned link: %w", uerr)
		}
		// The link's cgroup is gone: replace the link.
		log.Warn("pinned link is defunct, replacing it", "link", pin)
		if err := l.Unpin(); err != nil {
			l.Close()
			return nil, fmt.Errorf("unpin defunct link: %w", err)
		}
		l.Close()
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("open pinned link: %w", err)
	}
	l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: typ, Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", cgroup, err)
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin link: %w", err)
	}
	log.Debug("attached and pinned link", "link", pin, "cgroup", cgroup)
	return l, nil
}

// attachTracing attaches a tracing program and pins its link over any link
// pinned before. Tracing links cannot swap programs in place, so the new
// link is attached first (both run for a moment: their map writes are the
// same) and the old one goes when its pin is replaced: no gap.
func attachTracing(_, pin string, _ ebpf.AttachType, prog *ebpf.Program, log *slog.Logger) (link.Link, error) {
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attach tracing: %w", err)
	}
	tmp := pin + "_new"                      // bpffs refuses dots in names
	if _, err := os.Lstat(tmp); err == nil { // left by an interrupted start
		if err := unix.Unlink(tmp); err != nil {
			l.Close()
			return nil, fmt.Errorf("pin link: %w", err)
		}
	}
	if err := l.Pin(tmp); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin link: %w", err)
	}
	if err := os.Rename(tmp, pin); err != nil {
		l.Unpin()
		l.Close()
		return nil, fmt.Errorf("pin link: %w", err)
	}
	log.Debug("attached and pinned tracing link", "link", pin)
	return l, nil
}

// Close releases the daemon's handles. Pinned links stay attached, so
// redirected connects keep reaching the (now absent) listeners and fail:
// enforcement fails closed until the daemon returns or Unload runs.
func (r *Redirector) Close() error {
	var errs []error
	for _, l := range r.links {
		errs = append(errs, l.Close())
	}
	r.links = nil
	errs = append(errs, r.objs.Close())
	return errors.Join(errs...)
}

// Unload detaches and unpins everything Load pinned under pinPath. It only
// touches tollgate's own links, never other programs on the cgroup.
func Unload(pinPath string) error {
	if _, err := os.Stat(pinPath); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unload %s: %w", pinPath, ErrNotLoaded)
	}
	var errs []error
	linkDir := filepath.Join(pinPath, "links")
	entries, _ := os.ReadDir(linkDir)
	for _, e := range entries {
		p := filepath.Join(linkDir, e.Name())
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			// Not a link we can open: remove the pin, which drops the
			// kernel's reference to it.
			errs = append(errs, removeIgnoreMissing(p))
			continue
		}
		errs = append(errs, l.Unpin(), l.Close())
	}
	errs = append(errs, removePinnedMaps(filepath.Join(pinPath, "maps")))
	for _, d := range []string{linkDir, filepath.Join(pinPath, "maps"), pinPath} {
		errs = append(errs, removeIgnoreMissing(d))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unload %s: %w", pinPath, err)
	}
	return nil
}

// Loaded reports whether links are pinned under pinPath.
func Loaded(pinPath string) bool {
	entries, err := os.ReadDir(filepath.Join(pinPath, "links"))
	return err == nil && len(entries) > 0
}

func removePinnedMaps(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, removeIgnoreMissing(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

func removeIgnoreMissing(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// netnsCookie returns the cookie of the caller's network namespace.
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	return c, nil
}
