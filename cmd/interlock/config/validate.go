package config

import (
	"cmp"
	"errors"
	"fmt"
	"golang.org/x/crypto/ssh"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/interlock-dev/interlock/policy"
)

// Defaults filled by Validate.
const (
	DefaultListen          = "127.0.0.1:15001"
	DefaultAdmin           = "127.0.0.1:9470"
	DefaultStateDir        = "/var/lib/interlock"
	DefaultBPFFS           = "/sys/fs/bpf/interlock"
	DefaultResolveInterval = time.Second
	DefaultDNSInterval     = 30 * time.Second
	DefaultDialTimeout     = 10 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultLargeMessageMemoryMiB is gateway.large_message_memory_mib's
	// default.
	DefaultLargeMessageMemoryMiB = 512
	// DefaultPreparedStatementMemoryMiB is
	// gateway.prepared_statement_memory_mib's default
	// (postgres.DefaultRetainedStatementMemory).
	DefaultPreparedStatementMemoryMiB = 64
	// DefaultReviewStoreMiB is gateway.review_store_mib's default: 64
	// held commands of the longest (16 MiB), or about a million of a few
	// hundred bytes, a small part of any disk (review.DefaultMaxBytes).
	DefaultReviewStoreMiB = 1024
	DefaultLogLevel       = "info"
	// DefaultOpenConnections is gateway.open_connections' default.
	DefaultOpenConnections = "close"
)

// LogLevels are the accepted gateway.log_level values.
var LogLevels = []string{"debug", "info", "warn", "error"}

// OpenConnectionModes are the accepted gateway.open_connections values.
var OpenConnectionModes = []string{"close", "report"}

// SystemdUnitSuffixes are the unit types a workload can match: the ones whose
// processes live in a cgroup of their own.
var SystemdUnitSuffixes = []string{".service", ".scope", ".slice"}

// namePattern is the rule for target and workload names: they become metric
// labels, file names and map keys.
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.-]{0,62})$`)

// systemdUnitPattern is the character set systemd allows in unit names.
var systemdUnitPattern = regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+$`)

// Validate fills defaults and the parsed fields, and checks everything.
// It returns every problem found, joined with errors.Join; each is a
// *FieldError. It can be called again after the Config is changed.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.gateway(&c.Gateway)
	v.targets()
	v.identity()
	v.workloads()
	v.listeners()
	v.policy()
	return errors.Join(v.errs...)
}

type validator struct {
	c    *Config
	errs []error
}

func (v *validator) fail(field string, err error) {
	pos := v.c.source.find(field)
	v.errs = append(v.errs, &FieldError{File: v.c.Path, Line: pos.line, Column: pos.column, Field: field, Err: err})
}

func (v *validator) failf(field, format string, args ...any) {
	v.fail(field, fmt.Errorf(format, args...))
}

func (v *validator) gateway(g *Gateway) {
	g.ListenAddr, g.Listen6Addr, g.AdminAddr = netip.AddrPort{}, netip.AddrPort{}, netip.AddrPort{}

	g.Listen = cmp.Or(g.Listen, DefaultListen)
	if ap, ok := v.addrPort("gateway.listen", g.Listen); ok {
		if ap.Addr().Is4() {
			g.ListenAddr = ap
		} else {
			v.failf("gateway.listen", "%q is not an IPv4 address; IPv6 connects go to listen6", g.Listen)
		}
	}

	switch g.Listen6 {
	case Listen6Off:
	case "":
		if g.ListenAddr.IsValid() {
			g.Listen6Addr = netip.AddrPortFrom(netip.IPv6Loopback(), g.ListenAddr.Port())
			g.Listen6 = g.Listen6Addr.String()
		}
	default:
		if ap, ok := v.addrPort("gateway.listen6", g.Listen6); ok {
			if ap.Addr().Is6() && !ap.Addr().Is4In6() {
				g.Listen6Addr = ap
			} else {
				v.failf("gateway.listen6", `%q is not an IPv6 address; write it like "[::1]:15001", or "off"`, g.Listen6)
			}
		}
	}

	g.Admin = cmp.Or(g.Admin, DefaultAdmin)
	if ap, ok := v.addrPort("gateway.admin", g.Admin); ok {
		g.AdminAddr = ap
	}

	g.StateDir = cmp.Or(g.StateDir, DefaultStateDir)
	if !filepath.IsAbs(g.StateDir) {
		v.failf("gateway.state_dir", "%q is not an absolute path", g.StateDir)
	} else {
		g.StateDir = filepath.Clean(g.StateDir)
	}

	g.BPFFS = cmp.Or(g.BPFFS, DefaultBPFFS)
	switch bpffs := path.Clean(g.BPFFS); {
	case !path.IsAbs(g.BPFFS):
		v.failf("gateway.bpffs", "%q is not an absolute path", g.BPFFS)
	case bpffs == "/" || bpffs == "/sys/fs/bpf":
		v.failf("gateway.bpffs", "%q is not a folder of its own; pin under a folder below the bpffs mount, e.g. %q", g.BPFFS, DefaultBPFFS)
	default:
		g.BPFFS = bpffs
	}

	v.duration("gateway.resolve_interval", &g.ResolveInterval, DefaultResolveInterval, 100*time.Millisecond)
	v.duration("gateway.dns_interval", &g.DNSInterval, DefaultDNSInterval, time.Second)
	v.duration("gateway.dial_timeout", &g.DialTimeout, DefaultDialTimeout, time.Millisecond)
	v.duration("gateway.shutdown_timeout", &g.ShutdownTimeout, DefaultShutdownTimeout, time.Millisecond)
	v.mebibytes("gateway.large_message_memory_mib", &g.LargeMessageMemoryMiB, DefaultLargeMessageMemoryMiB, 2)
	v.mebibytes("gateway.prepared_statement_memory_mib", &g.PreparedStatementMemoryMiB, DefaultPreparedStatementMemoryMiB, 1)
	v.mebibytes("gateway.review_store_mib", &g.ReviewStoreMiB, DefaultReviewStoreMiB, 1)

	g.OpenConnections = cmp.Or(g.OpenConnections, DefaultOpenConnections)
	if !slices.Contains(OpenConnectionModes, g.OpenConnections) {
		v.failf("gateway.open_connections", "unknown value %q; use one of %s", g.OpenConnections, strings.Join(OpenConnectionModes, ", "))
	}
	g.LogLevel = cmp.Or(g.LogLevel, DefaultLogLevel)
	if !slices.Contains(LogLevels, g.LogLevel) {
		v.failf("gateway.log_level", "unknown log level %q; use one of %s", g.LogLevel, strings.Join(LogLevels, ", "))
	}
}

func (v *validator) targets() {
	if len(v.c.Targets) == 0 {
		v.failf("targets", "at least one target is required")
	}
	seen := newNames("target", v.targetName)
	destinations := map[string]int{}
	for i := range v.c.Targets {
		t := &v.c.Targets[i]
		field := fmt.Sprintf("targets[%d]", i)
		t.Host, t.Prefix, t.Port, t.ListenAddr = "", netip.Prefix{}, 0, netip.AddrPort{}

		v.checkName(seen, i, t.Name, t.ID())

		switch {
		case t.Protocol == "":
			v.failf(field+".protocol", "a protocol is required; known protocols: %s", strings.Join(Protocols, ", "))
		case !slices.Contains(Protocols, t.Protocol):
			v.failf(field+".protocol", "unknown protocol %q; known protocols: %s", t.Protocol, strings.Join(Protocols, ", "))
		}

		if t.Address == "" {
			v.failf(field+".address", `an address is required, e.g. "db.internal:5432" or "10.0.0.5:5432"`)
		} else if host, prefix, port, err := parseTargetAddress(t.Address); err != nil {
			v.fail(field+".address", err)
		} else {
			t.Host, t.Prefix, t.Port = host, prefix, port
			key := fmt.Sprintf("%s|%s|%d", prefix, strings.TrimSuffix(host, "."), port)
			if j, dup := destinations[key]; dup {
				v.failf(field+".address", "%q is also the address of target %q (targets[%d])", t.Address, v.targetName(j), j)
			} else {
				destinations[key] = i
			}
		}

		if t.Listen != "" {
			if ap, ok := v.addrPort(field+".listen", t.Listen); ok {
				t.ListenAddr = ap
			}
		}
		v.upstream(field, t)
	}
}

// upstream checks a target's credentials for the protocols that log in.
func (v *validator) upstream(field string, t *Target) {
	if t.Protocol == "tcp" {
		if t.Upstream != nil {
			v.failf(field+".upstream", "protocol tcp forwards bytes and logs in to nothing; remove upstream")
		}
		if t.AgentTLS != nil {
			v.failf(field+".agent_tls", "protocol tcp does not terminate TLS; remove agent_tls")
		}
		return
	}
	if t.Protocol != "postgres" && t.AgentTLS != nil {
		v.failf(field+".agent_tls", "agent_tls is for postgres targets; remove it")
	}
	if t.Protocol != "ssh" && t.AgentHostKey {
		v.failf(field+".agent_host_key", "agent_host_key is for ssh targets; remove it")
	}
	switch t.Protocol {
	case "postgres":
		v.postgresUpstream(field, t)
	case "ssh":
		v.sshUpstream(field, t)
	}
}

// secretFile resolves a credential file against the config's folder and
// checks it.
func (v *validator) secretFile(field string, path *string) {
	v.relativeFile(path)
	if err := checkSecretFile(*path); err != nil {
		v.fail(field, err)
	}
}

// sshUpstream checks an ssh target's login and host-key settings.
func (v *validator) sshUpstream(field string, t *Target) {
	u := t.Upstream
	if u == nil {
		v.failf(field+".upstream", "protocol ssh needs upstream credentials (user, private_key_file or password_file, known_hosts or host_key)")
		return
	}
	field += ".upstream"
	if u.User == "" {
		v.failf(field+".user", "the user the gateway logs in as is required")
	}
	if u.PrivateKeyFile == "" && u.PasswordFile == "" {
		v.failf(field+".private_key_file", "a private key file (or password_file) for the upstream login is required")
	}
	if u.PrivateKeyFile != "" {
		v.secretFile(field+".private_key_file", &u.PrivateKeyFile)
	}
	if u.PasswordFile != "" {
		v.secretFile(field+".password_file", &u.PasswordFile)
	}
	switch {
	case u.KnownHosts != "" && u.HostKey != "":
		v.failf(field+".host_key", "known_hosts and host_key are exclusive; keep one")
	case u.KnownHosts != "":
		v.relativeFile(&u.KnownHosts)
		if _, err := os.Stat(u.KnownHosts); err != nil {
			v.fail(field+".known_hosts", err)
		}
	case u.HostKey != "":
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(u.HostKey)); err != nil {
			v.failf(field+".host_key", "not a public key in authorized_keys form: %v", err)
		}
	default:
		v.failf(field+".known_hosts", "upstream's host key must be checked: give known_hosts or host_key")
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"database", u.Database != ""}, {"tls", u.TLS != ""}, {"ca_file", u.CAFile != ""}, {"server_name", u.ServerName != ""}} {
		if f.set {
			v.failf(field+"."+f.name, "%s is for postgres targets; remove it", f.name)
		}
	}
}

// postgresUpstream checks a postgres target's login and TLS settings.
func (v *validator) postgresUpstream(field string, t *Target) {
	u := t.Upstream
	if u == nil {
		v.failf(field+".upstream", "protocol postgres needs upstream credentials (user, password_file)")
		return
	}
	field += ".upstream"
	if u.User == "" {
		v.failf(field+".user", "the user the gateway logs in as is required")
	}
	if u.PasswordFile == "" {
		v.failf(field+".password_file", "a file holding the upstream password is required")
	} else {
		v.secretFile(field+".password_file", &u.PasswordFile)
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"private_key_file", u.PrivateKeyFile != ""}, {"known_hosts", u.KnownHosts != ""}, {"host_key", u.HostKey != ""}} {
		if f.set {
			v.failf(field+"."+f.name, "%s is for ssh targets; remove it", f.name)
		}
	}
	u.TLS = cmp.Or(u.TLS, TLSVerifyFull)
	switch u.TLS {
	case TLSDisable, TLSRequire, TLSVerifyFull:
	default:
		v.failf(field+".tls", "%q is not disable, require or verify-full", u.TLS)
	}
	if u.CAFile != "" {
		if u.TLS != TLSVerifyFull {
			v.failf(field+".ca_file", "ca_file is used only with tls: verify-full")
		}
		v.relativeFile(&u.CAFile)
		if _, err := os.Stat(u.CAFile); err != nil {
			v.fail(field+".ca_file", err)
		}
	}
}

// checkSecretFile: the file exists and is not open to every local user.
func checkSecretFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a folder", path)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return fmt.Errorf("%s is open to other users (mode %#o); chmod o-rwx it", path, st.Mode().Perm())
	}
	return nil
}

// policy compiles the policy once, so a rule that does not compile stops
// the load with the file, the rule and the reason.
func (v *validator) policy() {
	if _, err := policy.Compile(v.c.Policy, v.c.PolicyEnv()); err != nil {
		for _, e := range unjoin(err) {
			v.errs = append(v.errs, &FieldError{File: v.c.Path, Err: e})
		}
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// identity checks the OIDC issuers.
func (v *validator) identity() {
	seen := map[string]int{}
	for i := range v.c.Identity.OIDC {
		o := &v.c.Identity.OIDC[i]
		field := fmt.Sprintf("identity.oidc[%d]", i)
		if !namePattern.MatchString(o.Name) {
			v.failf(field+".name", "%q is not a valid issuer name; use 1 to 63 of a-z, 0-9, \"_\", \".\" and \"-\", starting with a letter or digit", o.Name)
		} else if j, dup := seen[o.Name]; dup {
			v.failf(field+".name", "duplicate: identity.oidc[%d] has the same name", j)
		} else {
			seen[o.Name] = i
		}
		u, err := url.Parse(o.Issuer)
		switch {
		case o.Issuer == "":
			v.failf(field+".issuer", "the issuer URL is required")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.failf(field+".issuer", "%q is not an http(s) URL", o.Issuer)
		case u.Scheme == "http" && !loopbackHost(u.Hostname()):
			v.failf(field+".issuer", "%q: plain http is accepted only on loopback; use https", o.Issuer)
		}
		if o.Audience == "" {
			v.failf(field+".audience", "required: tokens must be issued for interlock's audience")
		}
		if o.AdminAudience != "" && o.AdminAudience == o.Audience {
			v.failf(field+".admin_audience", "%q is also the workloads' audience: every workload's login token would be an admin's; "+
				"use an audience only administrators' tokens are issued for", o.AdminAudience)
		}
		o.GroupsClaim = cmp.Or(o.GroupsClaim, "groups")
		o.SubjectClaim = cmp.Or(o.SubjectClaim, "sub")
		if o.ClockSkew.Duration == 0 {
			o.ClockSkew.Duration = 30 * time.Second
		} else if o.ClockSkew.Duration < 0 || o.ClockSkew.Duration > 5*time.Minute {
			v.failf(field+".clock_skew", "%s is out of range (0 to 5m)", o.ClockSkew.Duration)
		}
	}
	if v.c.Gateway.LoginSocket == "" {
		v.c.Gateway.LoginSocket = DefaultLoginSocket
	} else if !filepath.IsAbs(v.c.Gateway.LoginSocket) {
		v.failf("gateway.login_socket", "%q is not an absolute path", v.c.Gateway.LoginSocket)
	}
	if f := v.c.Gateway.AdminTokensFile; f != "" {
		v.secretFile("gateway.admin_tokens_file", &v.c.Gateway.AdminTokensFile)
	}
	if f := v.c.Gateway.MetricsTokenFile; f != "" {
		v.secretFile("gateway.metrics_token_file", &v.c.Gateway.MetricsTokenFile)
	}
	if t := v.c.Gateway.AdminTLS; t != nil {
		switch {
		case t.CertFile == "" || t.KeyFile == "":
			v.failf("gateway.admin_tls", "needs both cert_file and key_file")
		default:
			v.relativeFile(&t.CertFile)
			if _, err := os.Stat(t.CertFile); err != nil {
				v.fail("gateway.admin_tls.cert_file", err)
			}
			v.secretFile("gateway.admin_tls.key_file", &t.KeyFile)
		}
		if t.CAFile != "" {
			v.relativeFile(&t.CAFile)
			if _, err := os.Stat(t.CAFile); err != nil {
				v.fail("gateway.admin_tls.ca_file", err)
			}
		}
	}
}

// relativeFile makes a path written relative to the config file's folder
// absolute.
func (v *validator) relativeFile(path *string) {
	if !filepath.IsAbs(*path) && v.c.Path != "" {
		*path = filepath.Join(filepath.Dir(v.c.Path), *path)
	}
}

// DefaultLoginSocket is where workloads log in unless configured.
const DefaultLoginSocket = "/run/interlock/login.sock"

// loopbackHost reports a host name or address that stays on the machine.
func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

func (v *validator) workloads() {
	seen := newNames("workload", v.workloadName)
	cgroups := map[string]int{}
	units := map[string]int{}
	for i := range v.c.Workloads {
		w := &v.c.Workloads[i]
		field := fmt.Sprintf("workloads[%d]", i)

		v.checkName(seen, i, w.Name, w.ID())

		m := &w.Match
		switch {
		case m.Cgroup == "" && m.SystemdUnit == "":
			v.failf(field+".match", "set one of cgroup or systemd_unit")
		case m.Cgroup != "" && m.SystemdUnit != "":
			v.failf(field+".match", "set only one of cgroup or systemd_unit")
		case m.Cgroup != "":
			cgroup, err := cleanCgroup(m.Cgroup)
			if err != nil {
				v.fail(field+".match.cgroup", err)
				break
			}
			m.Cgroup = cgroup
			if j, dup := cgroups[cgroup]; dup {
				v.failf(field+".match.cgroup", "cgroup %q is also matched by workload %q (workloads[%d])", cgroup, v.workloadName(j), j)
			} else {
				cgroups[cgroup] = i
			}
		default:
			if err := checkSystemdUnit(m.SystemdUnit); err != nil {
				v.fail(field+".match.systemd_unit", err)
				break
			}
			if j, dup := units[m.SystemdUnit]; dup {
				v.failf(field+".match.systemd_unit", "unit %q is also matched by workload %q (workloads[%d])", m.SystemdUnit, v.workloadName(j), j)
			} else {
				units[m.SystemdUnit] = i
			}
		}

		if name := w.Identity.OIDC; name != "" {
			if v.c.OIDCIssuer(name) == nil {
				v.failf(field+".identity.oidc", "no issuer %q in identity.oidc", name)
			}
			if w.Identity.Subject != "" || len(w.Identity.Groups) > 0 {
				v.failf(field+".identity.oidc", "a workload proven by OIDC takes its subject and groups from the token; remove subject and groups")
			}
		} else {
			w.Identity.Subject = cmp.Or(w.Identity.Subject, "workload:"+w.Name)
		}
		for j, g := range w.Identity.Groups {
			if strings.TrimSpace(g) == "" {
				v.failf(fmt.Sprintf("%s.identity.groups[%d]", field, j), "empty group name")
			}
		}

		e := &w.Egress
		e.Default = cmp.Or(e.Default, EgressDeny)
		if e.Default != EgressAllow && e.Default != EgressDeny {
			v.failf(field+".egress.default", "%q is not an egress default; use %q or %q", e.Default, EgressAllow, EgressDeny)
		}
		e.AllowRules = make([]AllowRule, 0, len(e.Allow))
		for j, a := range e.Allow {
			rule, err := parseAllowRule(a)
			if err != nil {
				v.fail(fmt.Sprintf("%s.egress.allow[%d]", field, j), err)
				continue
			}
			e.AllowRules = append(e.AllowRules, rule)
		}
	}
}

// names tracks the target or workload names seen so far, and their IDs.
type names struct {
	kind   string // "target" or "workload"
	index  map[string]int
	ids    map[uint32]int
	nameAt func(int) string
}

func newNames(kind string, nameAt func(int) string) *names {
	return &names{kind: kind, index: map[string]int{}, ids: map[uint32]int{}, nameAt: nameAt}
}

// checkName checks the name of entry i: the pattern, uniqueness, and that its
// ID is unique too, since IDs are what the kernel maps hold.
func (v *validator) checkName(seen *names, i int, name string, id uint32) {
	field := fmt.Sprintf("%ss[%d].name", seen.kind, i)
	switch {
	case name == "":
		v.failf(field, "a %s name is required", seen.kind)
		return
	case !namePattern.MatchString(name):
		v.failf(field, `%q is not a valid %s name; use 1 to 63 of a-z, 0-9, "_", "." and "-", starting with a letter or digit`, name, seen.kind)
		return
	}
	if j, dup := seen.index[name]; dup {
		v.failf(field, "duplicate %s name %q (first used by %ss[%d])", seen.kind, name, seen.kind, j)
		return
	}
	seen.index[name] = i
	if j, clash := seen.ids[id]; clash {
		v.failf(field, "%s %q has the same ID (%#08x) as %s %q (%ss[%d]); rename one of them",
			seen.kind, name, id, seen.kind, seen.nameAt(j), seen.kind, j)
		return
	}
	seen.ids[id] = i
}

func (v *validator) targetName(i int) string   { return v.c.Targets[i].Name }
func (v *validator) workloadName(i int) string { return v.c.Workloads[i].Name }

func (v *validator) addrPort(field, s string) (netip.AddrPort, bool) {
	ap, err := parseAddrPort(s)
	if err != nil {
		v.fail(field, err)
		return netip.AddrPort{}, false
	}
	return ap, true
}

// mebibytes fills a size in MiB with its default when unset (0) and
// checks it is at least min and at most 1 TiB.
func (v *validator) mebibytes(field string, n *int, def, min int) {
	switch {
	case *n == 0:
		*n = def
	case *n < min:
		v.failf(field, "%d is below the minimum of %d", *n, min)
	case *n > 1<<20:
		v.failf(field, "%d is above the maximum of %d (1 TiB)", *n, 1<<20)
	}
}

func (v *validator) duration(field string, d *Duration, def, least time.Duration) {
	switch {
	case d.Duration == 0:
		d.Duration = def
	case d.Duration < 0:
		v.failf(field, "%s is negative", d.Duration)
	case d.Duration < least:
		v.failf(field, "%s is below the minimum of %s", d.Duration, least)
	}
}

// listeners checks that no two of the gateway's listeners bind the same
// address and port.
func (v *validator) listeners() {
	type listener struct {
		field string
		addr  netip.AddrPort
	}
	g := &v.c.Gateway
	ls := []listener{{"gateway.listen", g.ListenAddr}, {"gateway.listen6", g.Listen6Addr}, {"gateway.admin", g.AdminAddr}}
	for i := range v.c.Targets {
		ls = append(ls, listener{fmt.Sprintf("targets[%d].listen", i), v.c.Targets[i].ListenAddr})
	}
	for i, l := range ls {
		if !l.addr.IsValid() {
			continue
		}
		for _, o := range ls[:i] {
			if o.addr.IsValid() && bindConflict(l.addr, o.addr) {
				v.failf(l.field, "%s is also bound by %s", l.addr, o.field)
				break
			}
		}
	}
}

// bindConflict reports whether binding both addresses would fail: the same
// port on the same address, or on the wildcard address of the same family.
// IPv6 listeners are expected to be IPv6-only (network "tcp6"), so
// 0.0.0.0 and [::] on one port do not conflict.
func bindConflict(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	covers := func(w, x netip.Addr) bool { return w.IsUnspecified() && w.Is4() == x.Is4() }
	return a.Addr() == b.Addr() || covers(a.Addr(), b.Addr()) || covers(b.Addr(), a.Addr())
}

// cleanCgroup checks a cgroup path below the cgroup v2 root and cleans it.
func cleanCgroup(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf(`%q is not absolute; write the path below the cgroup v2 root, e.g. "/agents/demo"`, p)
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "", fmt.Errorf(`%q contains ".."`, p)
	}
	clean := path.Clean(p)
	if clean == "/" {
		return "", errors.New(`"/" is the cgroup root, which holds every process; select a cgroup below it`)
	}
	if rel, ok := strings.CutPrefix(clean, "/sys/fs/cgroup/"); ok {
		return "", fmt.Errorf("%q includes the cgroup mount; write the path below it, e.g. %q", p, "/"+rel)
	}
	return clean, nil
}

func checkSystemdUnit(u string) error {
	i := slices.IndexFunc(SystemdUnitSuffixes, func(s string) bool { return strings.HasSuffix(u, s) })
	switch {
	case len(u) > 255 || !systemdUnitPattern.MatchString(u):
		return fmt.Errorf("%q is not a valid systemd unit name", u)
	case i < 0:
		return fmt.Errorf("%q has no unit type; write the full name, e.g. %q (types: %s)", u, u+".service", strings.Join(SystemdUnitSuffixes, ", "))
	case u == SystemdUnitSuffixes[i]:
		return fmt.Errorf("%q has no name before the unit type", u)
	case strings.HasSuffix(u, "@"+SystemdUnitSuffixes[i]):
		return fmt.Errorf("%q is a template; name an instance, e.g. %q", u, strings.TrimSuffix(u, SystemdUnitSuffixes[i])+"1"+SystemdUnitSuffixes[i])
	}
	return nil
}

// PolicyEnv is what the policy may name: the targets with their protocols
// and the workloads.
func (c *Config) PolicyEnv() policy.Env {
	env := policy.Env{Targets: map[string]string{}}
	for i := range c.Targets {
		env.Targets[c.Targets[i].Name] = c.Targets[i].Protocol
	}
	for i := range c.Workloads {
		env.Workloads = append(env.Workloads, c.Workloads[i].Name)
	}
	return env
}
