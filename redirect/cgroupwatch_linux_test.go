package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/interlock-dev/interlock/redirect/redirecttest"
	"golang.org/x/sys/unix"
)

// testWorkloadMkdir is the workload the kernel recognises at mkdir.
const testWorkloadMkdir = 13

// watchEnv is setup's data path with a guarded parent standing for a
// unit's slice, the paths a gateway expects below it, and an unguarded
// parent. Cgroups are made by each test, after the gateway's pass.
type watchEnv struct {
	*env
	slice     redirecttest.Cgroup // the guarded parent
	unguarded redirecttest.Cgroup
	echoDst   string
}

// Paths below the slice; long255 and long256 are filled up to that many
// bytes of path.
const (
	agentUnit  = "agent.service"
	laterSlice = "later.slice"
)

// withoutCgroupWatch is an Open option: the cgroup_mkdir program left out,
// as on a kernel without BTF.
func withoutCgroupWatch(o *Options) { o.withoutCgroupWatch = true }

func setupWatch(t *testing.T) *watchEnv {
	e := setup(t)
	w := &watchEnv{env: e, echoDst: "127.0.0.2:7000"}
	redirecttest.EchoServer(t, w.echoDst)
	redirecttest.EchoServer(t, plainDenied)
	w.slice = redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/guarded.slice")
	redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/guarded.slice/old.service")
	w.unguarded = redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/unguarded.slice")

	// The gateway's pass, in its order: workloads, expected, guards.
	must(t, e.dp.SyncExpected([]Expected{
		{Path: w.path(agentUnit), WorkloadID: testWorkloadMkdir, Workload: true, EgressDeny: true},
		{Path: w.path(laterSlice + "/" + agentUnit), WorkloadID: testWorkloadMkdir, Workload: true},
		{Path: w.longPath(255), WorkloadID: testWorkloadMkdir, Workload: true},
		{Path: w.longPath(256), WorkloadID: testWorkloadMkdir, Workload: true},
		{Path: w.unguarded.Path + "/" + agentUnit, WorkloadID: testWorkloadMkdir, Workload: true},
	}))
	must(t, e.dp.SyncGuards([]Guard{{CgroupID: w.slice.ID, Watermark: newestChild(t, w.slice)}}))
	return w
}

func (w *watchEnv) path(below string) string { return w.slice.Path + "/" + below }

// longPath is a path below the slice of exactly n bytes.
func (w *watchEnv) longPath(n int) string {
	return w.path(strings.Repeat("x", n-len(w.slice.Path)-1))
}

func (w *watchEnv) mkdir(t *testing.T, path string) redirecttest.Cgroup {
	t.Helper()
	return redirecttest.MakeCgroup(t, w.top.Root, path)
}

func (w *watchEnv) dial(t *testing.T, cg redirecttest.Cgroup, addr string) redirecttest.Result {
	t.Helper()
	return redirecttest.Agent(t, cg, redirecttest.Dial{Network: dialNetwork(addr), Address: addr})
}

// workloadOf is the pinned workloads entry of a cgroup, read as
// `interlock status` reads it.
func workloadOf(t *testing.T, pin string, cg redirecttest.Cgroup) (Workload, bool) {
	t.Helper()
	st, err := Inspect(pin)
	must(t, err)
	i := slices.IndexFunc(st.Workloads, func(w Workload) bool { return w.CgroupID == cg.ID })
	if i < 0 {
		return Workload{}, false
	}
	return st.Workloads[i], true
}

func isSettled(t *testing.T, pin string, cg redirecttest.Cgroup) bool {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "settled"), &ebpf.LoadPinOptions{ReadOnly: true})
	must(t, err)
	defer m.Close()
	var v uint8
	err = m.Lookup(cg.ID, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return false
	}
	must(t, err)
	return true
}

func requireTracksCgroups(t *testing.T, d *Datapath) {
	t.Helper()
	if err := probeCgroupWatch(slog.New(slog.DiscardHandler)); err != nil {
		redirecttest.Unavailable(t, "this kernel cannot classify cgroups at mkdir", err.Error())
	}
	if !d.TracksCgroups() {
		t.Fatal("the kernel has what the cgroup_mkdir program needs, but Open did not attach it")
	}
}

// TestCgroupWatch: a cgroup made under a guarded parent is classified by
// the kernel as it is made: at an expected workload path it is that
// workload from its first connect, elsewhere it is settled and goes out
// directly; an expected folder, and a path too long to read whole, stay
// unresolved under the guard.
func TestCgroupWatch(t *testing.T) {
	w := setupWatch(t)
	requireTracksCgroups(t, w.dp)

	agent := w.mkdir(t, w.path(agentUnit))
	sibling := w.mkdir(t, w.path("other.service"))
	folder := w.mkdir(t, w.path(laterSlice))
	nested := w.mkdir(t, w.path(laterSlice+"/"+agentUnit))
	long255 := w.mkdir(t, w.longPath(255))
	long256 := w.mkdir(t, w.longPath(256))
	loose := w.mkdir(t, w.unguarded.Path+"/other.service")
	looseAgent := w.mkdir(t, w.unguarded.Path+"/"+agentUnit)

	t.Run("workloads map", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			cg   redirecttest.Cgroup
			want Workload
		}{
			{"expected workload", agent, Workload{CgroupID: agent.ID, ID: testWorkloadMkdir, EgressDeny: true}},
			{"expected workload in a new folder", nested, Workload{CgroupID: nested.ID, ID: testWorkloadMkdir}},
			{"expected workload, 255-byte path", long255, Workload{CgroupID: long255.ID, ID: testWorkloadMkdir}},
			{"expected workload, unguarded parent", looseAgent, Workload{CgroupID: looseAgent.ID, ID: testWorkloadMkdir}},
		} {
			if got, ok := workloadOf(t, w.pin, tt.cg); !ok || got != tt.want {
				t.Errorf("%s: workloads entry %+v (found %v), want %+v", tt.name, got, ok, tt.want)
			}
		}
		for _, cg := range []redirecttest.Cgroup{sibling, folder, long256, loose} {
			if got, ok := workloadOf(t, w.pin, cg); ok {
				t.Errorf("%s: workloads entry %+v, want none", cg.Path, got)
			}
		}
	})

	t.Run("settled", func(t *testing.T) {
		if !isSettled(t, w.pin, sibling) {
			t.Errorf("%s, made in the guarded parent at no expected path, is not settled", sibling.Path)
		}
		for _, cg := range []redirecttest.Cgroup{agent, folder, nested, long255, long256, loose, looseAgent} {
			if isSettled(t, w.pin, cg) {
				t.Errorf("%s is settled, want it not", cg.Path)
			}
		}
	})

	t.Run("connects", func(t *testing.T) {
		for _, tt := range []struct {
			name     string
			cg       redirecttest.Cgroup
			workload uint32
		}{
			{"expected workload", agent, testWorkloadMkdir},
			{"expected workload in a new folder", nested, testWorkloadMkdir},
			{"expected workload, 255-byte path", long255, testWorkloadMkdir},
			{"expected folder", folder, UnresolvedWorkload},
			{"path of 256 bytes", long256, UnresolvedWorkload},
		} {
			r := w.dial(t, tt.cg, w.echoDst)
			if want := viaGateway(r, w.echoDst, tt.workload, testTarget4); r.Reply != want {
				t.Errorf("%s: gateway answered %q (errno %q, %s), want %q", tt.name, r.Reply, r.Errno, r.Error, want)
			}
		}
		// The workload's egress flag came with it.
		if r := w.dial(t, agent, plainDenied); r.Errno != "EPERM" {
			t.Errorf("expected workload dialling %s: %+v, want EPERM (its egress denies it)", plainDenied, r)
		}
		for _, cg := range []redirecttest.Cgroup{sibling, loose} {
			for _, addr := range []string{w.echoDst, plainDenied} {
				if r := w.dial(t, cg, addr); !reachedDirectly(r) {
					t.Errorf("%s dialling %s: %+v, want a direct connection", cg.Path, addr, r)
				}
			}
		}
	})

	t.Run("inspect", func(t *testing.T) {
		st, err := Inspect(w.pin)
		must(t, err)
		if !slices.ContainsFunc(st.Links, func(l LinkState) bool { return l.Name == "cgroup_mkdir" && l.ProgramID != 0 }) {
			t.Errorf("links %+v: no cgroup_mkdir", st.Links)
		}
		folderEntry := Expected{Path: w.path(laterSlice), WorkloadID: testWorkloadMkdir}
		if !slices.Contains(st.Expected, folderEntry) {
			t.Errorf("expected %+v: the folder on the way %+v is missing", st.Expected, folderEntry)
		}
		if slices.ContainsFunc(st.Expected, func(e Expected) bool { return len(e.Path) >= cgroupPathMax }) {
			t.Errorf("expected %+v: holds a path of %d bytes or more", st.Expected, cgroupPathMax)
		}
		if want := (Expected{Path: w.path(agentUnit), WorkloadID: testWorkloadMkdir, Workload: true, EgressDeny: true}); !slices.Contains(st.Expected, want) {
			t.Errorf("expected %+v: %+v is missing", st.Expected, want)
		}
	})
}

// pinnedMkdirLink is the pinned cgroup_mkdir link's id and program id.
func pinnedMkdirLink(t *testing.T, pin string) (linkID, progID uint32) {
	t.Helper()
	st, err := Inspect(pin)
	must(t, err)
	for _, l := range st.Links {
		if l.Name == "cgroup_mkdir" {
			return l.LinkID, l.ProgramID
		}
	}
	t.Fatalf("no cgroup_mkdir link pinned in %s: %+v", pin, st.Links)
	return 0, 0
}

// requireLinkGone fails when link id is still in the kernel. A link is
// detached as its last reference is dropped: Open and Uninstall drop it
// before they return.
func requireLinkGone(t *testing.T, id uint32) {
	t.Helper()
	if l, err := link.NewFromID(link.ID(id)); err == nil {
		l.Close()
		t.Errorf("link %d is still attached", id)
	}
}

// TestCgroupWatchLifecycle: the pinned cgroup_mkdir link keeps classifying
// while no gateway runs; the next gateway puts its own program in its
// place (a new link, the old one gone) and Uninstall removes it.
func TestCgroupWatchLifecycle(t *testing.T) {
	w := setupWatch(t)
	requireTracksCgroups(t, w.dp)
	firstLink, firstProg := pinnedMkdirLink(t, w.pin)

	must(t, w.dp.Close())
	w.dp = nil
	agent := w.mkdir(t, w.path(agentUnit))
	if got, ok := workloadOf(t, w.pin, agent); !ok || got.ID != testWorkloadMkdir {
		t.Errorf("made while no gateway runs: workloads entry %+v (found %v), want workload %d", got, ok, testWorkloadMkdir)
	}
	sibling := w.mkdir(t, w.path("other.service"))
	if !isSettled(t, w.pin, sibling) {
		t.Errorf("made while no gateway runs: %s is not settled", sibling.Path)
	}

	w.open(t)
	requireTracksCgroups(t, w.dp)
	secondLink, secondProg := pinnedMkdirLink(t, w.pin)
	info, err := w.dp.watch.objs.InterlockCgroupMkdir.Info()
	must(t, err)
	if id, _ := info.ID(); uint32(id) != secondProg {
		t.Errorf("the pinned link runs program %d, want this gateway's %d", secondProg, id)
	}
	if secondProg == firstProg || secondLink == firstLink {
		t.Errorf("link %d program %d after the restart, as before it: not replaced", secondLink, secondProg)
	}
	requireLinkGone(t, firstLink)
	// The new program classifies: after a restart the unit's cgroup is
	// made again.
	removeCgroupDir(t, agent)
	again := w.mkdir(t, w.path(agentUnit))
	if again.ID == agent.ID {
		t.Fatalf("the cgroup made again has the id %d of the first", again.ID)
	}
	if got, ok := workloadOf(t, w.pin, again); !ok || got.ID != testWorkloadMkdir {
		t.Errorf("made after the restart: workloads entry %+v (found %v), want workload %d", got, ok, testWorkloadMkdir)
	}

	must(t, w.dp.Close())
	w.dp = nil
	must(t, Uninstall(w.pin))
	requireLinkGone(t, secondLink)
}

// removeCgroupDir removes a cgroup a test made, before the test's end (a
// unit stopping); MakeCgroup's clean-up then finds it gone.
func removeCgroupDir(t *testing.T, cg redirecttest.Cgroup) {
	t.Helper()
	must(t, os.Remove(cg.Dir()))
}

// TestCgroupWatchLeftOut: without the cgroup_mkdir program (a kernel
// without BTF) the guards alone decide: a new cgroup at an expected path
// and one at any other path are both unresolved until the gateway's pass.
// An earlier gateway's pinned program is removed.
func TestCgroupWatchLeftOut(t *testing.T) {
	w := setupWatch(t)
	requireTracksCgroups(t, w.dp)
	must(t, w.dp.Close())
	w.options = append(w.options, withoutCgroupWatch)
	w.open(t)
	w.gw4.Close()
	w.gw6.Close()
	w.listen(t)
	if w.dp.TracksCgroups() {
		t.Fatal("TracksCgroups with the program left out")
	}
	st, err := Inspect(w.pin)
	must(t, err)
	if slices.ContainsFunc(st.Links, func(l LinkState) bool { return l.Name == "cgroup_mkdir" }) {
		t.Errorf("links %+v: the earlier gateway's cgroup_mkdir link is still pinned", st.Links)
	}

	agent := w.mkdir(t, w.path(agentUnit))
	sibling := w.mkdir(t, w.path("other.service"))
	if got, ok := workloadOf(t, w.pin, agent); ok {
		t.Errorf("workloads entry %+v without the program", got)
	}
	for _, cg := range []redirecttest.Cgroup{agent, sibling} {
		r := w.dial(t, cg, w.echoDst)
		if want := viaGateway(r, w.echoDst, UnresolvedWorkload, testTarget4); r.Reply != want {
			t.Errorf("%s: gateway answered %q (errno %q, %s), want %q", cg.Path, r.Reply, r.Errno, r.Error, want)
		}
	}
}

// cgroupV1Mount is the mount point of a cgroup v1 hierarchy (a hybrid
// host's), or "" when there is none.
func cgroupV1Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	for line := range strings.Lines(string(b)) {
		pre, post, ok := strings.Cut(line, " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(postFields) >= 1 && postFields[0] == "cgroup" {
			return fields[4]
		}
	}
	return ""
}

// TestCgroupWatchIgnoresV1: a cgroup v1 hierarchy (a hybrid host's) makes
// cgroups with ids and paths of its own; one made at an expected path is
// not taken for the workload's.
func TestCgroupWatchIgnoresV1(t *testing.T) {
	w := setupWatch(t)
	requireTracksCgroups(t, w.dp)
	v1 := cgroupV1Mount(t)
	if v1 == "" {
		t.Skip("no cgroup v1 hierarchy is mounted")
	}
	path := w.top.Path + "/v1.service"
	must(t, w.dp.SyncExpected([]Expected{{Path: path, WorkloadID: testWorkloadMkdir, Workload: true}}))
	before, err := Inspect(w.pin)
	must(t, err)

	for _, dir := range []string{filepath.Join(v1, w.top.Path), filepath.Join(v1, path)} {
		must(t, os.Mkdir(dir, 0o755))
		t.Cleanup(func() {
			if err := os.Remove(dir); err != nil {
				t.Errorf("removing cgroup v1 folder %s: %v", dir, err)
			}
		})
	}
	after, err := Inspect(w.pin)
	must(t, err)
	if !slices.Equal(before.Workloads, after.Workloads) {
		t.Errorf("a cgroup v1 folder made at an expected path changed the workloads: %+v, then %+v", before.Workloads, after.Workloads)
	}
	// The same path in the v2 hierarchy is the workload's.
	cg := w.mkdir(t, path)
	if got, ok := workloadOf(t, w.pin, cg); !ok || got.ID != testWorkloadMkdir {
		t.Errorf("cgroup v2 folder at the expected path: workloads entry %+v (found %v), want workload %d", got, ok, testWorkloadMkdir)
	}
}

// TestCgroupWatchUnarmed: until the gateway has written its expected
// paths (a gateway that does not know of them), a cgroup made in a
// guarded parent is not settled: it stays unresolved, as with the guards
// alone. Once written, even as an empty set, it is settled.
func TestCgroupWatchUnarmed(t *testing.T) {
	e := setup(t)
	requireTracksCgroups(t, e.dp)
	dst := "127.0.0.2:7000"
	redirecttest.EchoServer(t, dst)
	slice := redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/guarded.slice")
	must(t, e.dp.SyncGuards([]Guard{{CgroupID: slice.ID, Watermark: slice.ID}}))

	before := redirecttest.MakeCgroup(t, e.top.Root, slice.Path+"/before.service")
	requireUnresolved(t, e.pin, before, dst)

	must(t, e.dp.SyncExpected(nil))
	after := redirecttest.MakeCgroup(t, e.top.Root, slice.Path+"/after.service")
	if !isSettled(t, e.pin, after) {
		t.Errorf("%s is not settled once the gateway wrote its (empty) expected set", after.Path)
	}
	st, err := Inspect(e.pin)
	must(t, err)
	if len(st.Expected) != 0 {
		t.Errorf("Inspect: expected %+v, want none", st.Expected)
	}
}

// TestCgroupWatchFailedSync: an expected set that cannot be written whole
// (more paths than the map holds) takes back the claim that the map's
// paths are all there are. The set it should have replaced may lack the
// path of a workload added since, so a cgroup made in a guarded parent at
// a path the map does not hold stays unresolved, as with the guards alone,
// instead of going out directly; a later set that fits settles again.
func TestCgroupWatchFailedSync(t *testing.T) {
	w := setupWatch(t)
	requireTracksCgroups(t, w.dp)

	var many []Expected
	for i := range 5000 {
		many = append(many, Expected{Path: w.path(fmt.Sprintf("u%d.service", i)), WorkloadID: testWorkloadMkdir, Workload: true})
	}
	if err := w.dp.SyncExpected(many); err == nil {
		t.Fatal("SyncExpected of 5000 paths: no error, want the map full")
	}
	// A workload's unit the failed set named.
	requireUnresolved(t, w.pin, w.mkdir(t, w.path("added.service")), w.echoDst)

	must(t, w.dp.SyncExpected([]Expected{{Path: w.path(agentUnit), WorkloadID: testWorkloadMkdir, Workload: true}}))
	if later := w.mkdir(t, w.path("later.service")); !isSettled(t, w.pin, later) {
		t.Errorf("%s is not settled once an expected set was written again", later.Path)
	}
}

// TestCgroupWatchMountOfOneCgroup: where the cgroup v2 mount shows one
// cgroup rather than the hierarchy's root (as in a cgroup namespace; here
// a bind mount), the gateway's paths are below that cgroup and the
// kernel's from the root, so none would match: the program is left out
// and a workload's new cgroup in a guarded parent stays unresolved instead
// of being settled as no workload's.
func TestCgroupWatchMountOfOneCgroup(t *testing.T) {
	mount := func(o *Options) {
		dir := t.TempDir()
		if err := unix.Mount(o.CgroupRoot, dir, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind-mounting %s: %v", o.CgroupRoot, err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		o.CgroupRoot = dir
	}
	e := setup(t, mount)
	if err := probeCgroupWatch(slog.New(slog.DiscardHandler)); err != nil {
		redirecttest.Unavailable(t, "this kernel cannot classify cgroups at mkdir", err.Error())
	}
	if e.dp.TracksCgroups() {
		t.Error("TracksCgroups with the cgroup v2 mount of one cgroup, want false")
	}
	dst := "127.0.0.2:7000"
	redirecttest.EchoServer(t, dst)
	slice := redirecttest.MakeCgroup(t, e.top.Root, e.top.Path+"/guarded.slice")
	// The paths as a gateway whose cgroup v2 mount is e.top names them.
	must(t, e.dp.SyncExpected([]Expected{{Path: "/guarded.slice/agent.service", WorkloadID: testWorkloadMkdir, Workload: true}}))
	must(t, e.dp.SyncGuards([]Guard{{CgroupID: slice.ID, Watermark: slice.ID}}))

	requireUnresolved(t, e.pin, redirecttest.MakeCgroup(t, e.top.Root, slice.Path+"/agent.service"), dst)
}

// requireUnresolved checks that cg, made in a guarded parent, is not
// settled and that its connect to dst (a target) reaches the gateway as
// unresolved.
func requireUnresolved(t *testing.T, pin string, cg redirecttest.Cgroup, dst string) {
	t.Helper()
	if isSettled(t, pin, cg) {
		t.Errorf("%s is settled as no workload's", cg.Path)
	}
	r := redirecttest.Agent(t, cg, redirecttest.Dial{Network: dialNetwork(dst), Address: dst})
	if want := viaGateway(r, dst, UnresolvedWorkload, testTarget4); r.Reply != want {
		t.Errorf("%s: gateway answered %q (errno %q, %s), want %q", cg.Path, r.Reply, r.Errno, r.Error, want)
	}
}

// TestCgroupWatchNewSliceNotSettled: a unit whose Slice= changed is made in
// a slice the gateway does not expect. The new slice is not settled, so the
// unit's cgroup in it is unresolved (sent to the gateway, which resolves
// it), never taken for no workload's; a new unit at an unexpected path is
// still settled.
func TestCgroupWatchNewSliceNotSettled(t *testing.T) {
	w := setupWatch(t)
	requireTracksCgroups(t, w.dp)
	moved := w.mkdir(t, w.path("moved.slice"))
	movedUnit := w.mkdir(t, w.path("moved.slice/"+agentUnit))
	other := w.mkdir(t, w.path("other.service"))
	if isSettled(t, w.pin, moved) || isSettled(t, w.pin, movedUnit) {
		t.Errorf("a new slice (or the unit in it) is settled as no workload's")
	}
	if !isSettled(t, w.pin, other) {
		t.Errorf("%s, a new unit at no expected path, is not settled", other.Path)
	}
	requireUnresolved(t, w.pin, movedUnit, w.echoDst)
}

// TestCgroupWatchMovedUnitNotSettled: a cgroup named like a workload's
// unit, made in another guarded slice that already exists (the unit moved
// there), is not settled: it is unresolved, and the gateway resolves it.
func TestCgroupWatchMovedUnitNotSettled(t *testing.T) {
	w := setupWatch(t)
	requireTracksCgroups(t, w.dp)
	other := w.mkdir(t, w.top.Path+"/other.slice")
	must(t, w.dp.SyncGuards([]Guard{
		{CgroupID: w.slice.ID, Watermark: newestChild(t, w.slice)},
		{CgroupID: other.ID, Watermark: newestChild(t, other)},
	}))
	moved := w.mkdir(t, other.Path+"/"+agentUnit)
	stranger := w.mkdir(t, other.Path+"/stranger.service")
	if !isSettled(t, w.pin, stranger) {
		t.Errorf("%s, at no expected path and with no workload's name, is not settled", stranger.Path)
	}
	requireUnresolved(t, w.pin, moved, w.echoDst)
}
