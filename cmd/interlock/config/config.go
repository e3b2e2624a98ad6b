package config

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/interlock-dev/interlock/policy"
)

// Protocols are the target protocols the gateway has a handler for.
var Protocols = []string{"tcp", "postgres", "ssh"}

// maxFileSize bounds what Parse accepts: a gateway configuration is a few
// kilobytes, and the YAML parser's work grows with the input.
const maxFileSize = 1 << 20

// Config is a gateway configuration file.
type Config struct {
	Path      string         `yaml:"-"` // file it was loaded from
	Gateway   Gateway        `yaml:"gateway"`
	Targets   []Target       `yaml:"targets"`
	Workloads []Workload     `yaml:"workloads"`
	Identity  IdentityConfig `yaml:"identity"`
	Policy    policy.Config  `yaml:"policy"`

	// source locates fields in the file Parse read, for error messages;
	// nil when the Config was built in code.
	source *sourceMap
}

// Gateway configures the gateway process itself.
type Gateway struct {
	Listen          string   `yaml:"listen"`           // transparent listener, IPv4 ip:port, default "127.0.0.1:15001"
	Listen6         string   `yaml:"listen6"`          // IPv6 listener for redirected IPv6 connects; default "[::1]:<port of listen>"; "off" disables it
	Admin           string   `yaml:"admin"`            // admin listener, ip:port, default "127.0.0.1:9470"
	StateDir        string   `yaml:"state_dir"`        // default "/var/lib/interlock"
	BPFFS           string   `yaml:"bpffs"`            // pin folder, default "/sys/fs/bpf/interlock"; that it is on a bpffs mount is checked when pinning
	ResolveInterval Duration `yaml:"resolve_interval"` // how often cgroups and systemd units are re-resolved, default 1s, min 100ms
	DNSInterval     Duration `yaml:"dns_interval"`     // how often hostname targets are re-resolved, default 30s, min 1s
	DialTimeout     Duration `yaml:"dial_timeout"`     // default 10s
	ShutdownTimeout Duration `yaml:"shutdown_timeout"` // default 10s
	LogLevel        string   `yaml:"log_level"`        // debug|info|warn|error, default info
	// AdminTokensFile maps bearer tokens to administrators (subject,
	// groups) for the admin API; it must not be readable by other users.
	AdminTokensFile string `yaml:"admin_tokens_file"`
	// AdminTLS serves the admin API over HTTPS; nil: plain HTTP, meant
	// for a loopback address.
	AdminTLS *AdminTLS `yaml:"admin_tls"`
	// MetricsTokenFile holds a bearer token /metrics then requires (an
	// administrator's credential is accepted too); empty: /metrics is
	// open to whoever reaches the admin listener.
	MetricsTokenFile string `yaml:"metrics_token_file"`
	// LoginSocket is where workloads present OIDC tokens (interlock
	// login); default /run/interlock/login.sock.
	LoginSocket string `yaml:"login_socket"`
	// StrictRecording writes every command to disk (fsynced) before it is
	// forwarded, and its outcome in a result event after; default false
	// (events are written in batches within 100 ms, without fsync).
	StrictRecording bool `yaml:"strict_recording"`
	// LargeMessageMemoryMiB bounds what the PostgreSQL handler's sessions
	// hold at once in messages over 1 MiB (result values, Bind
	// parameters, long statements), in MiB; default 512, at least 2.
	LargeMessageMemoryMiB int `yaml:"large_message_memory_mib"`
	// PreparedStatementMemoryMiB bounds, per PostgreSQL session, what
	// the gateway keeps of the statements the session prepared (and of
	// its denied statement names and cursors) until it closes them, in
	// MiB; default 64, at least 1. A Parse, PREPARE or DECLARE over it is
	// refused with 53200.
	PreparedStatementMemoryMiB int `yaml:"prepared_statement_memory_mib"`
	// ReviewStoreMiB bounds what the review store (<state_dir>/approvals.db)
	// keeps of held commands and their requests, in MiB; default 1024, at
	// least 1. A command that would pass it is denied, not held, once
	// decided requests can make no more room.
	ReviewStoreMiB int `yaml:"review_store_mib"`
	// OpenConnections is what the gateway does with connections
	// workloads already have open that the data path would now redirect
	// or refuse (see redirect.Datapath.Sweep): "close" (the default) or
	// "report" (log them, leave them open).
	OpenConnections string `yaml:"open_connections"`

	// Parsed by Validate.
	ListenAddr  netip.AddrPort `yaml:"-"`
	Listen6Addr netip.AddrPort `yaml:"-"` // zero when listen6 is "off"
	AdminAddr   netip.AddrPort `yaml:"-"`
}

// Listen6Off is the listen6 value that disables the IPv6 listener.
const Listen6Off = "off"

// Target is a destination whose connections are redirected into the gateway.
type Target struct {
	Name     string `yaml:"name"`     // required, unique, see validName
	Protocol string `yaml:"protocol"` // required, one of Protocols
	Address  string `yaml:"address"`  // "ip:port", "[ipv6]:port", "a.b.c.d/len:port", "[v6prefix/len]:port" or "hostname:port"
	Listen   string `yaml:"listen"`   // optional: this target's plain listener in --explicit mode, ip:port
	// Upstream is how the gateway logs in to the target (protocols other
	// than tcp); the agent never sees these credentials.
	Upstream *Upstream `yaml:"upstream"`
	// AgentTLS offers TLS to agents with a certificate the gateway mints
	// for the dialled host or IP (postgres); default true.
	AgentTLS *bool `yaml:"agent_tls"`
	// AgentHostKey offers agents a plain host key of this target's own
	// (kept in <state_dir>/ssh-host-keys/<name>) next to the gateway CA's
	// certificate, for SSH clients that cannot trust a CA (ssh); default
	// false.
	AgentHostKey bool `yaml:"agent_host_key"`

	// Parsed by Validate.
	Host       string         `yaml:"-"` // lower-cased hostname when the address is a name, else ""
	Prefix     netip.Prefix   `yaml:"-"` // valid when the address is an IP (as /32 or /128) or a prefix; IPv4 stays IPv4
	Port       uint16         `yaml:"-"` // 1..65535
	ListenAddr netip.AddrPort `yaml:"-"` // zero when Listen is empty
}

// Upstream holds a target's credentials and how to reach it.
type Upstream struct {
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"` // read at each new session; relative paths are relative to the config file
	Database     string `yaml:"database"`      // optional: always use this database upstream
	TLS          string `yaml:"tls"`           // disable | require | verify-full (default)
	CAFile       string `yaml:"ca_file"`       // verify-full: CA bundle; default the system roots
	ServerName   string `yaml:"server_name"`   // verify-full: name to verify; default the target's hostname or dialled IP

	// ssh: the login key (OpenSSH or PEM private key, unencrypted), and
	// how upstream's host key is checked: a known_hosts file, or one
	// pinned key ("ssh-ed25519 AAAA..."). Exactly one of the two.
	PrivateKeyFile string `yaml:"private_key_file"`
	KnownHosts     string `yaml:"known_hosts"`
	HostKey        string `yaml:"host_key"`
}

// Upstream TLS modes.
const (
	TLSDisable    = "disable"
	TLSRequire    = "require"
	TLSVerifyFull = "verify-full"
)

// AgentTLSEnabled reports whether the target offers TLS to agents.
func (t *Target) AgentTLSEnabled() bool { return t.AgentTLS == nil || *t.AgentTLS }

// ID is the target's stable ID in the kernel maps and on the wire between
// gateway restarts: FNV-1a 32 of "target/"+Name, never 0.
func (t *Target) ID() uint32 { return stableID("target/" + t.Name) }

// Workload is a set of processes whose connections to targets are
// redirected: a cgroup subtree or a systemd unit.
type Workload struct {
	Name     string   `yaml:"name"` // required, unique, see validName
	Match    Match    `yaml:"match"`
	Identity Identity `yaml:"identity"`
	Egress   Egress   `yaml:"egress"`
}

// ID is the workload's stable ID in the kernel maps: FNV-1a 32 of
// "workload/"+Name, never 0.
func (w *Workload) ID() uint32 { return stableID("workload/" + w.Name) }

// Match selects a workload's processes; exactly one field is set.
type Match struct {
	Cgroup      string `yaml:"cgroup"`       // absolute path below the cgroup v2 root; Validate cleans it
	SystemdUnit string `yaml:"systemd_unit"` // unit name with its suffix, e.g. "agent.service"
}

// Identity is a workload's identity: static, or proven with an OIDC token.
type Identity struct {
	Subject string   `yaml:"subject"` // default "workload:<name>"
	Groups  []string `yaml:"groups"`
	// OIDC names an issuer of identity.oidc: the workload has no identity,
	// and its connections are refused, until it presents a valid token
	// from that issuer (interlock login, or in a protocol's password
	// field). Subject and groups then come from the token.
	OIDC string `yaml:"oidc"`
}

// IdentityConfig is the identity section: the OIDC issuers workloads and
// administrators prove themselves with.
type IdentityConfig struct {
	OIDC []OIDCIssuer `yaml:"oidc"`
}

// OIDCIssuer is one trusted OIDC issuer.
type OIDCIssuer struct {
	Name     string `yaml:"name"`     // required, unique; workloads name it
	Issuer   string `yaml:"issuer"`   // the issuer URL, exactly as in its tokens' iss
	Audience string `yaml:"audience"` // required: tokens must be for this audience
	// AdminAudience, when set, makes this issuer's tokens for that
	// audience administrators on the admin API. It must differ from
	// Audience: a workload's own login token must not be an admin's.
	// Unset: no token from this issuer is accepted on the admin API.
	AdminAudience string   `yaml:"admin_audience"`
	GroupsClaim   string   `yaml:"groups_claim"`  // default "groups"
	SubjectClaim  string   `yaml:"subject_claim"` // default "sub"
	ClockSkew     Duration `yaml:"clock_skew"`    // default 30s, at most 5m
}

// Egress says what a workload may reach besides the targets.
type Egress struct {
	Default string   `yaml:"default"` // "allow" or "deny", default "deny"
	Allow   []string `yaml:"allow"`   // "10.0.0.0/8", "127.0.0.53:53", "[fd00::/8]:443", ...; an IP without /len is one host

	AllowRules []AllowRule `yaml:"-"` // parsed by Validate, in the order written
}

// AdminTLS is the admin API's certificate, and what the CLI on this host
// trusts when it calls the API.
type AdminTLS struct {
	CertFile string `yaml:"cert_file"` // PEM certificate chain, leaf first
	KeyFile  string `yaml:"key_file"`  // PEM private key; must not be open to other users
	// CAFile is the CA bundle the CLI verifies the certificate with;
	// empty: the system's roots.
	CAFile string `yaml:"ca_file"`
}

// AdminURL is the base URL the CLI and review links reach the admin API
// at: https with admin_tls, and a listener on all addresses (0.0.0.0, ::)
// reached through loopback.
func (g *Gateway) AdminURL() string {
	addr := g.Admin
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().IsUnspecified() {
		lo := netip.IPv6Loopback()
		if ap.Addr().Unmap().Is4() {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		addr = netip.AddrPortFrom(lo, ap.Port()).String()
	}
	if g.AdminTLS != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// Egress defaults.
const (
	EgressAllow = "allow"
	EgressDeny  = "deny"
)

// AllowRule is one parsed egress.allow entry.
type AllowRule struct {
	Prefix netip.Prefix // IPv4 or IPv6 as written, never v4-mapped
	Port   uint16       // 0 means any port
}

// Denies reports whether destinations that are not targets are refused
// unless an allow entry covers them (the kernel's egress-deny flag).
func (e *Egress) Denies() bool { return e.Default == EgressDeny }

// Allows reports whether a workload with this egress may connect to dst,
// a destination that is not a target, as the kernel decides it: any with
// the default allow, else only what an allow entry covers. dst's IPv4 may
// be v4-mapped.
func (e *Egress) Allows(dst netip.AddrPort) bool {
	if !e.Denies() {
		return true
	}
	addr := dst.Addr().Unmap()
	for _, r := range e.AllowRules {
		if r.Prefix.Contains(addr) && (r.Port == 0 || r.Port == dst.Port()) {
			return true
		}
	}
	return false
}

// Duration is a time.Duration written as "1s", "500ms" or "5m".
type Duration struct{ time.Duration }

// UnmarshalYAML implements yaml.NodeUnmarshaler; it reads the node rather than
// bytes so that its errors carry the value's position.
func (d *Duration) UnmarshalYAML(node ast.Node) error {
	switch n := node.(type) {
	case *ast.NullNode:
		d.Duration = 0
		return nil
	case *ast.StringNode:
		v, err := time.ParseDuration(n.Value)
		if err != nil {
			return &nodeError{node: node, msg: fmt.Sprintf(`%q is not a duration; write it like "1s", "500ms" or "5m"`, n.Value)}
		}
		d.Duration = v
		return nil
	case *ast.IntegerNode, *ast.FloatNode:
		v := node.GetToken().Value
		return &nodeError{node: node, msg: fmt.Sprintf(`%s has no unit; write it like "%ss" or "%sms"`, v, v, v)}
	case *ast.AliasNode:
		return &nodeError{node: node, msg: "write durations out instead of using an alias"}
	default:
		return &nodeError{node: node, msg: fmt.Sprintf(`%s is not a duration; write it like "1s", "500ms" or "5m"`, node.Type().YAMLName())}
	}
}

// MarshalYAML writes the duration the way UnmarshalYAML reads it.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// nodeError is a decoding error found by one of this package's unmarshalers.
type nodeError struct {
	node ast.Node
	msg  string
}

func (e *nodeError) Error() string { return e.msg }

// Load reads the configuration file at path, then parses and validates it.
// A file anyone may write is refused: it holds the policy, and a local
// user (an agent's too) who could rewrite it would set the next start's
// rules.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// LoadForGateway is Load for the process that enforces the file: the
// gateway, at start and at each reload. Besides what Load refuses, it
// refuses a file someone other than root and the gateway's own user could
// change: one owned by another user, one its group may write (unless the
// group is root's), and one in a folder others may write to without the
// sticky bit, or owned by another user (the file could be replaced). For
// a symbolic link (a Kubernetes ConfigMap mount) both the link's folder
// and the file's are checked.
func LoadForGateway(path string) (*Config, error) {
	if err := checkGuarded(path); err != nil {
		return nil, err
	}
	return Load(path)
}

// checkGuarded is LoadForGateway's check.
func checkGuarded(path string) error {
	euid := uint32(os.Geteuid())
	trusted := func(uid uint32) bool { return uid == 0 || uid == euid }
	refuse := func(format string, args ...any) error {
		return &FieldError{File: path, Err: fmt.Errorf(format+"; the file holds the policy, and only root and the gateway's user may be able to change it", args...)}
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil // not a Unix file system: nothing to check
	}
	switch {
	case !trusted(sys.Uid):
		return refuse("the file is owned by uid %d", sys.Uid)
	case st.Mode().Perm()&0o020 != 0 && sys.Gid != 0:
		return refuse("the file is writable by its group (gid %d, mode %04o); run chmod g-w %s", sys.Gid, st.Mode().Perm(), path)
	}
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, dir := range dirs {
		dst, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("reading config: %w", err)
		}
		dsys, ok := dst.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		mode := dst.Mode()
		sticky := mode&os.ModeSticky != 0
		switch {
		case !trusted(dsys.Uid):
			return refuse("its folder %s is owned by uid %d", dir, dsys.Uid)
		case !sticky && mode.Perm()&0o002 != 0:
			return refuse("its folder %s is writable by every user (mode %04o)", dir, mode.Perm())
		case !sticky && mode.Perm()&0o020 != 0 && dsys.Gid != 0:
			return refuse("its folder %s is writable by its group (gid %d, mode %04o)", dir, dsys.Gid, mode.Perm())
		}
	}
	return nil
}

// LoadGateway reads only the gateway section of the file at path, for the
// commands that call a running gateway's admin API: they need its address,
// and a file whose other sections do not load (a policy being edited) must
// not keep them from it. Other sections are decoded as far as they go and
// not validated; unknown fields are not errors.
func LoadGateway(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	body, src, err := parseBody(path, data)
	if err != nil {
		return nil, err
	}
	var gw struct {
		Gateway Gateway `yaml:"gateway"`
	}
	if err := guard(func() error { return yaml.NodeToValue(body, &gw) }); err != nil {
		return nil, decodeError(path, src, err)
	}
	c := &Config{Path: path, Gateway: gw.Gateway, source: src}
	_ = guard(func() error { return yaml.NodeToValue(body, c) }) // names for display, if they decode
	c.Path, c.Gateway, c.source = path, gw.Gateway, src
	v := &validator{c: c}
	v.gateway(&c.Gateway)
	if err := errors.Join(v.errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// readFile reads a configuration file, refusing one anyone may write.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if st.Mode().Perm()&0o002 != 0 {
		return nil, &FieldError{File: path, Err: fmt.Errorf(
			"the file is writable by every user (mode %04o), and it holds the policy; run chmod o-w %s", st.Mode().Perm(), path)}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return data, nil
}

// Parse decodes data strictly (unknown fields are errors), then validates it
// with [Config.Validate]. path names the file in errors.
func Parse(path string, data []byte) (*Config, error) {
	body, src, err := parseBody(path, data)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	if err := guard(func() error { return yaml.NodeToValue(body, c, yaml.DisallowUnknownField()) }); err != nil {
		return nil, decodeError(path, src, err)
	}
	c.Path = path
	c.source = src
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseBody parses data as one YAML document within the file limits.
func parseBody(path string, data []byte) (ast.Node, *sourceMap, error) {
	fileErr := func(format string, args ...any) error {
		return &FieldError{File: path, Err: fmt.Errorf(format, args...)}
	}
	if len(data) > maxFileSize {
		return nil, nil, fileErr("file is %d bytes; a configuration file is at most %d", len(data), maxFileSize)
	}
	if depth := flowDepth(data); depth > maxFlowDepth {
		return nil, nil, fileErr("brackets nest %d deep; at most %d are allowed", depth, maxFlowDepth)
	}
	var file *ast.File
	err := guard(func() (err error) {
		file, err = parser.ParseBytes(data, 0)
		return err
	})
	if err != nil {
		return nil, nil, decodeError(path, nil, err)
	}
	var body ast.Node
	for _, doc := range file.Docs {
		if doc == nil || isNil(doc.Body) {
			continue
		}
		if _, ok := doc.Body.(*ast.CommentGroupNode); ok {
			continue
		}
		if body != nil {
			pos := nodePosition(doc.Body)
			return nil, nil, &FieldError{File: path, Line: pos.line, Column: pos.column,
				Err: errors.New("more than one YAML document; a configuration file holds one")}
		}
		body = doc.Body
	}
	if body == nil {
		return nil, nil, fileErr("file is empty")
	}
	if err := checkExpansion(path, body); err != nil {
		return nil, nil, err
	}
	src, err := newSourceMap(path, body)
	if err != nil {
		return nil, nil, err
	}
	return body, src, nil
}

// guard runs the YAML library, turning a panic into an error: configuration
// files come from users, and the library has panicked on malformed input.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the YAML library failed on this file: %v", r)
		}
	}()
	return f()
}

// Target returns the target with that name, or nil.
func (c *Config) Target(name string) *Target {
	for i := range c.Targets {
		if c.Targets[i].Name == name {
			return &c.Targets[i]
		}
	}
	return nil
}

// TargetByID returns the target whose ID is id, or nil.
func (c *Config) TargetByID(id uint32) *Target {
	for i := range c.Targets {
		if c.Targets[i].ID() == id {
			return &c.Targets[i]
		}
	}
	return nil
}

// Workload returns the workload with that name, or nil.
func (c *Config) Workload(name string) *Workload {
	for i := range c.Workloads {
		if c.Workloads[i].Name == name {
			return &c.Workloads[i]
		}
	}
	return nil
}

// OIDCIssuer returns the identity.oidc issuer called name, or nil.
func (c *Config) OIDCIssuer(name string) *OIDCIssuer {
	for i := range c.Identity.OIDC {
		if c.Identity.OIDC[i].Name == name {
			return &c.Identity.OIDC[i]
		}
	}
	return nil
}

// WorkloadByID returns the workload whose ID is id, or nil.
func (c *Config) WorkloadByID(id uint32) *Workload {
	for i := range c.Workloads {
		if c.Workloads[i].ID() == id {
			return &c.Workloads[i]
		}
	}
	return nil
}

// stableID hashes a kind-prefixed name; 0 means "none" in the kernel maps, so
// it is never returned.
func stableID(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s)) // never fails
	if id := h.Sum32(); id != 0 {
		return id
	}
	return 1
}
