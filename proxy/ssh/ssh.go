package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/interlock-dev/interlock/identity/keyfile"
	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy"
	"github.com/interlock-dev/interlock/proxy/sshca"
	"github.com/interlock-dev/interlock/record"
)

// Target is one configured SSH target as the handler needs it.
type Target struct {
	Name string
	// Address is the configured host:port; its host is a principal of the
	// agent-facing certificate and the name upstream's host key is looked
	// up under in KnownHosts.
	Address string
	// User is the login name upstream.
	User string
	// PrivateKeyFile and PasswordFile are upstream's credentials; at least
	// one. The key is tried first.
	PrivateKeyFile string
	PasswordFile   string
	// KnownHosts is an OpenSSH known_hosts file, HostKey a pinned key in
	// authorized_keys form ("ssh-ed25519 AAAA..."); exactly one.
	KnownHosts string
	HostKey    string
	// AgentHostKeyFile, if set, is a plain host key offered to agents next
	// to the CA's certificate, for clients that cannot use certificates.
	AgentHostKeyFile string
}

// Recordings is where sessions are recorded: the event log, and the folder
// terminal streams (.cast files) are written to.
type Recordings interface {
	Create(id string, start record.Start, now time.Time) (*record.Recorder, error)
	Dir() string
}

// Policy decides requests: a *policy.Policy, or a *policy.Live, whose
// reloads open connections follow from their next request.
type Policy interface {
	Decide(policy.Request) policy.Decision
}

// Options configure a Handler.
type Options struct {
	Targets    map[uint32]Target // by proxy.Target.ID
	Policy     Policy
	Recordings Recordings
	CA         *sshca.CA
	Commands   *proxy.CommandMetrics
	Logger     *slog.Logger
	// HandshakeTimeout bounds the agent's and upstream's SSH handshakes;
	// zero means 30 s.
	HandshakeTimeout time.Duration
	// Login verifies and binds the OIDC token a caller that needs a login
	// gives as its password; nil refuses such callers.
	Login proxy.LoginFunc
	// Reviewer holds exec, shell and subsystem requests a review rule
	// matches until a human decides; nil denies them.
	Reviewer proxy.Reviewer
}

// Handler is the ssh protocol engine.
type Handler struct {
	opts    Options
	log     *slog.Logger
	targets map[uint32]*upstreamTarget
}

// upstreamTarget is a Target with its credentials loaded.
type upstreamTarget struct {
	Target
	auth     []ssh.AuthMethod
	hostKeys ssh.HostKeyCallback
	// hostKeyAlgos are the algorithms of the keys known for upstream,
	// asked for in the handshake; nil: x/crypto's default order.
	hostKeyAlgos []string
	agentKey     ssh.Signer // nil: certificate only
}

// New checks the options and loads every target's credentials, so that a
// missing key file fails at start-up rather than at the first session.
func New(o Options) (*Handler, error) {
	if o.Policy == nil || o.Recordings == nil || o.CA == nil || o.Commands == nil {
		return nil, errors.New("ssh handler: policy, recordings, CA and command metrics are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	h := &Handler{opts: o, log: o.Logger, targets: map[uint32]*upstreamTarget{}}
	for id, t := range o.Targets {
		ut, err := loadTarget(t)
		if err != nil {
			return nil, fmt.Errorf("ssh target %s: %w", t.Name, err)
		}
		h.targets[id] = ut
	}
	return h, nil
}

func loadTarget(t Target) (*upstreamTarget, error) {
	ut := &upstreamTarget{Target: t}
	if t.PrivateKeyFile != "" {
		// The key is the target's credential: refused when others may
		// read it, as OpenSSH and the gateway's own keys do.
		pem, err := keyfile.ReadPrivate(t.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("reading the upstream key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, fmt.Errorf("parsing the upstream key %s: %w", t.PrivateKeyFile, err)
		}
		ut.auth = append(ut.auth, ssh.PublicKeys(signer))
	}
	if t.PasswordFile != "" {
		file := t.PasswordFile
		if _, err := proxy.ReadPasswordFile(file); err != nil {
			return nil, err
		}
		// Read at each login, so that a rotated password needs no restart.
		ut.auth = append(ut.auth, ssh.PasswordCallback(func() (string, error) { return proxy.ReadPasswordFile(file) }))
	}
	if len(ut.auth) == 0 {
		return nil, errors.New("no upstream credential (private_key_file or password_file)")
	}
	switch {
	case t.KnownHosts != "" && t.HostKey != "":
		return nil, errors.New("known_hosts and host_key are exclusive")
	case t.KnownHosts != "":
		cb, err := knownhosts.New(t.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("reading known_hosts: %w", err)
		}
		ut.hostKeys = cb
		ut.hostKeyAlgos = keyAlgorithms(knownKeys(t.KnownHosts, t.Address))
	case t.HostKey != "":
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(t.HostKey))
		if err != nil {
			return nil, fmt.Errorf("parsing host_key: %w", err)
		}
		ut.hostKeys = ssh.FixedHostKey(key)
		ut.hostKeyAlgos = keyAlgorithms([]ssh.PublicKey{key})
	default:
		// Never skipped: without a way to check upstream's key the gateway
		// would hand the real credentials to whoever answers.
		return nil, errors.New("no way to verify upstream's host key (known_hosts or host_key)")
	}
	if t.AgentHostKeyFile != "" {
		k, err := sshca.LoadOrCreateHostKey(t.AgentHostKeyFile)
		if err != nil {
			return nil, err
		}
		ut.agentKey = k
	}
	return ut, nil
}

// Serve runs one agent connection: it terminates the agent's SSH, logs in
// upstream, and relays channels and requests that the policy allows.
func (h *Handler) Serve(ctx context.Context, s *proxy.Session) error {
	t, ok := h.targets[s.Target.ID]
	if !ok {
		return fmt.Errorf("target %q (id %d) is not a configured ssh target", s.Target.Name, s.Target.ID)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	log := s.Logger
	if log == nil {
		log = h.log
	}
	c := &conn{h: h, s: s, t: t, ctx: ctx, cancel: cancel, log: log, open: map[*sessionChannel]bool{}}
	return c.run()
}

// conn is one agent connection.
type conn struct {
	h      *Handler
	s      *proxy.Session
	t      *upstreamTarget
	ctx    context.Context
	cancel context.CancelCauseFunc
	log    *slog.Logger

	agent    *ssh.ServerConn
	upstream *ssh.Client
	rec      *record.Recorder
	cmds     *proxy.SessionCommands // set once the agent has authenticated
	base     policy.Request
	user     string

	wg sync.WaitGroup // channel goroutines

	mu        sync.Mutex
	agentGone bool // the agent's connection ended
	upGone    bool // upstream's ended while the agent's was open
	nextChan  int
	open      map[*sessionChannel]bool // session channels, to tell them why the session ends
	// Reverse channels upstream may open, allowed by an earlier request.
	agentFwd, x11Fwd bool
	remoteFwd        int // tcpip-forward requests allowed
	// cancelled are the remote forwards (host:port upstream) cancelled
	// because the policy came to deny their connections.
	cancelled map[string]bool
}

// principals are the names the agent may have dialled: the configured
// host and the address the connection was for.
func (c *conn) principals() []string {
	var ps []string
	if host, _, err := net.SplitHostPort(c.t.Address); err == nil && host != "" {
		ps = append(ps, host)
	}
	if c.s.Destination.IsValid() {
		ps = append(ps, c.s.Destination.Addr().Unmap().String())
	}
	return ps
}
