package ssh

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/interlock-dev/interlock/policy"
	"github.com/interlock-dev/interlock/proxy/ssh/sftp"
	"github.com/interlock-dev/interlock/record"
)

// sftpRelay relays an sftp subsystem packet by packet: every file operation
// is decided before it reaches the target, and recorded with its outcome.
// A denied operation is answered by the gateway with SFTP's permission
// denied status; the session goes on.
type sftpRelay struct {
	sc *sessionChannel

	// mu orders the packets written to the agent (upstream's replies and
	// the gateway's own) and guards the tracker and ops.
	mu      sync.Mutex
	tracker *sftp.Tracker
	ops     map[uint32]sftpOp // forwarded requests to record, by id
	// home is the directory relative paths start from, as the server
	// answered the gateway's own REALPATH of "." (see learnHome), or the
	// client's; "" until then. homeErr says why it is not known, once
	// the gateway has asked.
	home, homeErr string
	// versionSeen: the server's first packet (its VERSION) has come
	// through, and versioned is closed; replies' own. homeAnswered is
	// closed when the server has answered the gateway's REALPATH,
	// repliesDone when replies returns.
	versionSeen                          bool
	versioned, homeAnswered, repliesDone chan struct{}

	// askedHome: requests has sent the gateway's REALPATH (its own).
	askedHome bool

	// upMu orders the packets written to the server: the agent's, and
	// the gateway's own (a REALPATH, closes of handles it could not
	// track).
	upMu sync.Mutex
}

// homeTimeout is how long the client's requests wait for the server to
// answer the gateway's REALPATH. Past it they go on, and a relative path
// is refused until the answer comes.
const homeTimeout = 15 * time.Second

// sftpOp is a forwarded request waiting for its reply.
type sftpOp struct {
	decision policy.Decision
	began    time.Time
	seq      uint64 // strict recording: the operation's command event
}

func newSFTPRelay(sc *sessionChannel) *sftpRelay {
	return &sftpRelay{sc: sc, tracker: sftp.NewTracker(), ops: map[uint32]sftpOp{},
		versioned: make(chan struct{}), homeAnswered: make(chan struct{}), repliesDone: make(chan struct{})}
}

// requests reads the agent's packets, decides them and forwards the
// allowed ones.
func (s *sftpRelay) requests() {
	r := sftp.NewReader(s.sc.ch)
	for {
		p, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.broken("reading the client's sftp stream", err)
			}
			return
		}
		req, err := sftp.ParseRequest(p.Raw)
		if err != nil {
			s.broken("parsing the client's sftp request", err)
			return
		}
		s.mu.Lock()
		tracked, err := s.tracker.Request(req)
		s.mu.Unlock()
		if errors.Is(err, sftp.ErrUnknownHandle) {
			s.refuseHandle(req, err)
			continue
		}
		if err != nil {
			// Not tracked (a reused id, or too much in flight): answered
			// by the gateway, leaving the tracker as it was.
			s.reply(sftp.StatusPacket(req.ID, sftp.StatusFailure, "interlock: "+err.Error()))
			continue
		}
		req = tracked
		if req.Op == "unknown" {
			// Not a version 3 request: OpenSSH's server would never answer
			// it (and stall what follows), and the gateway cannot say what
			// it does.
			s.answer(req, sftp.StatusOpUnsupported, "interlock: unknown sftp request type "+req.Type.String())
			continue
		}
		d, decided := s.decide(req)
		if d.Action != policy.Allow {
			s.answer(req, sftp.StatusPermissionDenied, "interlock: "+d.Message)
			continue
		}
		if decided && req.Type != sftp.TypeInit {
			op := sftpOp{decision: d, began: time.Now()}
			if recordedOp(req) {
				seq, err := s.sc.c.beginCommand(sftpCommand(req, d))
				if err != nil {
					s.answer(req, sftp.StatusFailure, "interlock: cannot record this operation, so it does not run it")
					continue
				}
				op.seq = seq
			}
			s.mu.Lock()
			s.ops[req.ID] = op
			s.mu.Unlock()
		}
		if err := s.upstream(p.Raw); err != nil {
			return
		}
		if req.Type == sftp.TypeInit && !s.askedHome {
			s.askedHome = true
			s.learnHome()
		}
	}
}

// learnHome asks the server for the login directory, right after the
// INIT exchange, and waits for the answer before the client's next
// request is read: OpenSSH's scp sends relative paths (lstat, stat,
// realpath) without asking for "." first. Only requests, which calls it,
// forwards the client's requests, so they wait in order; replies goes on
// reading the server meanwhile, so a server waiting for its replies to be
// read does not stall, and swallows the answer (see homeReply).
func (s *sftpRelay) learnHome() {
	ctx := s.sc.c.ctx
	select { // the server answers INIT before it reads anything else
	case <-s.versioned:
	case <-s.repliesDone:
		return
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	raw, err := s.tracker.InternalRealpath(".")
	if err != nil {
		s.homeErr = "interlock could not ask the server for it: " + err.Error()
	} else {
		s.homeErr = `the server has not yet answered interlock's REALPATH "."`
	}
	s.mu.Unlock()
	if err != nil {
		s.sc.c.log.Warn("asking the sftp server for the login directory", "error", err)
		return
	}
	if err := s.upstream(raw); err != nil {
		return // the stream is ending: so will requests
	}
	timer := time.NewTimer(homeTimeout)
	defer timer.Stop()
	select {
	case <-s.homeAnswered:
	case <-s.repliesDone:
	case <-ctx.Done():
	case <-timer.C:
		s.sc.c.log.Warn(`the sftp server has not answered interlock's REALPATH "."; relative paths are refused until it does`, "waited", homeTimeout)
	}
}

// homeReply takes the server's answer to the gateway's REALPATH of ".",
// with s.mu held.
func (s *sftpRelay) homeReply(c sftp.Completed) {
	switch {
	case c.Response.Type == sftp.TypeName && len(c.Response.Names) == 1 && path.IsAbs(c.Response.Names[0]):
		s.home, s.homeErr = path.Clean(c.Response.Names[0]), ""
	case c.Response.Type == sftp.TypeStatus:
		s.homeErr = `the server refused interlock's REALPATH ".": ` + c.Status.String()
		if c.Response.Message != "" {
			s.homeErr += " (" + c.Response.Message + ")"
		}
	default:
		s.homeErr = `the server answered interlock's REALPATH "." with no absolute path`
	}
	close(s.homeAnswered)
}

// upstream writes a packet to the server.
func (s *sftpRelay) upstream(raw []byte) error {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	_, err := s.sc.up.Write(raw)
	return err
}

// refuseHandle denies a request on a handle the tracker does not know as
// open: one no HANDLE reply has given out yet (OpenSSH's handles are
// predictable, so a client can name the one a pending open will get), or
// one being closed (the server may already have given it to another
// file). Such a request could only be decided without its file's path,
// which no path rule would match. A client never needs one: a handle is
// known from the moment its HANDLE reply reaches the client.
func (s *sftpRelay) refuseHandle(req sftp.Request, err error) {
	c := s.sc.c
	d := policy.Decision{Action: policy.Deny, Message: err.Error()}
	c.cmds.Decided(d)
	c.recordDecision(policy.SSH{Request: "sftp", FileOp: fileOp(req), FileWrites: req.Writes()},
		fmt.Sprintf("%s (handle %x)", fileOp(req), req.Handle), d)
	s.reply(sftp.StatusPacket(req.ID, sftp.StatusPermissionDenied, "interlock: "+err.Error()))
}

// decide asks the policy about a request. Reads, writes and closes on a
// handle, and the INIT handshake, are covered by the decision on the open
// that gave the handle out; decided is false for them. A request on a
// handle gets here only with the handle's path (the tracker refuses one on
// a handle it does not know as open), so fsetstat, fsync and copy-data
// are decided on their files' paths.
func (s *sftpRelay) decide(req sftp.Request) (d policy.Decision, decided bool) {
	switch req.Type {
	case sftp.TypeInit, sftp.TypeRead, sftp.TypeWrite, sftp.TypeReaddir, sftp.TypeFstat:
		return policy.Decision{Action: policy.Allow}, false
	case sftp.TypeClose:
		return policy.Decision{Action: policy.Allow}, true // recorded with its byte counts
	}
	c := s.sc.c
	f := policy.SSH{Request: "sftp", FileOp: fileOp(req), FileWrites: req.Writes()}
	var err1, err2 error
	switch {
	case isHomeQuery(req):
		f.FilePath = "." // the query that makes relative paths known
	case req.Type == sftp.TypeExtended && req.Extension == sftp.ExtExpandPath:
		f.FilePath, err1 = s.expand(req.Path)
	default:
		f.FilePath, err1 = s.resolve(req.Path)
		f.FileTarget, err2 = s.resolve(req.Path2)
		if req.Type == sftp.TypeSymlink && req.Path != "" && !path.IsAbs(req.Path) && err2 == nil {
			// A relative symlink target is relative to the link's
			// folder, not to the login directory: link
			// /srv/a/l -> ../etc points to /srv/etc.
			f.FilePath, err1 = path.Join(path.Dir(f.FileTarget), req.Path), nil
		}
	}
	err := errors.Join(err1, err2)
	if err == nil && req.Type == sftp.TypeExtended && !sftp.KnownExtension(req.Extension) {
		// Whatever it names (a server's copy-file, say) policy would see
		// no path: a rule about paths could not hold.
		err = fmt.Errorf("interlock does not know the sftp extension %q, so it cannot tell which files it touches", req.Extension)
	}
	if err != nil {
		d = policy.Decision{Action: policy.Deny, Message: err.Error()}
		c.cmds.Decided(d)
		c.recordDecision(f, describeSFTP(req), d)
		return d, true
	}
	d = c.evaluate(f)
	if d.Action == policy.Review {
		d = policy.Decision{Action: policy.Deny, Rule: d.Rule, Message: d.Message + " (file operations cannot be held for review)"}
	}
	if d.Action != policy.Allow || recordedOp(req) {
		c.cmds.Decided(d)
	}
	if d.Action != policy.Allow {
		c.recordDecision(f, describeSFTP(req), d)
	}
	return d, true
}

// recordedOp: operations recorded (and counted) when allowed. Metadata
// reads (stat, lstat, realpath, readlink, statvfs, ...) are decided but,
// allowed, not recorded: a directory listing would drown the log.
func recordedOp(req sftp.Request) bool {
	switch req.Type {
	case sftp.TypeOpen, sftp.TypeOpendir, sftp.TypeClose:
		return true
	}
	return req.Writes()
}

// isHomeQuery is the REALPATH of "." with which a client learns its login
// directory (the gateway asks it too: see learnHome).
func isHomeQuery(req sftp.Request) bool {
	return req.Type == sftp.TypeRealpath && (req.Path == "." || req.Path == "")
}

// errHomeUnknown refuses a relative path while the login directory it is
// relative to is not known: policy rules name absolute paths, and a
// relative one would match none of them.
var errHomeUnknown = errors.New("relative path, and interlock does not know the login directory it is relative to")

// errTildeUser refuses expand-path of ~user: OpenSSH's server expands it
// to that user's home, which the gateway cannot see.
var errTildeUser = errors.New("interlock cannot tell which folder a ~user path names on the server")

// resolve is a path as policy sees it: cleaned lexically (/tmp/../etc is
// /etc) and, when relative, joined to the login directory the server
// told. Symbolic links cannot be resolved from here.
func (s *sftpRelay) resolve(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if path.IsAbs(p) {
		return path.Clean(p), nil
	}
	s.mu.Lock()
	home, why := s.home, s.homeErr
	s.mu.Unlock()
	if home == "" && why != "" {
		return "", fmt.Errorf("%q: %w: %s", p, errHomeUnknown, why)
	}
	if home == "" {
		return "", fmt.Errorf("%q: %w", p, errHomeUnknown)
	}
	return path.Join(home, p), nil
}

// expand is an expand-path request's path as OpenSSH's server expands it
// before resolving it: "" and ~ are the login directory, ~/x is x in it.
// Its ~user is that user's home, which the gateway cannot know.
func (s *sftpRelay) expand(p string) (string, error) {
	switch {
	case p == "" || p == "~":
		return s.resolve(".")
	case strings.HasPrefix(p, "~/"):
		return s.resolve("." + p[1:])
	case strings.HasPrefix(p, "~"):
		return "", fmt.Errorf("%q: %w", p, errTildeUser)
	}
	return s.resolve(p)
}

// answer sends the agent the gateway's own STATUS reply to a tracked req.
func (s *sftpRelay) answer(req sftp.Request, code sftp.Status, msg string) {
	raw := sftp.StatusPacket(req.ID, code, msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp, err := sftp.ParseResponse(raw); err == nil {
		s.tracker.Response(resp) // the request is no longer pending
	}
	s.sc.ch.Write(raw)
}

// reply sends the agent a packet of the gateway's, in order with
// upstream's replies.
func (s *sftpRelay) reply(raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sc.ch.Write(raw)
}

// replies relays upstream's packets to the agent and records the
// operations they complete. A reply it cannot pair with a request it
// forwarded, or cannot read, ends the session (see broken).
func (s *sftpRelay) replies() {
	defer close(s.repliesDone)
	r := sftp.NewReader(s.sc.up)
	for {
		p, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.broken("reading the server's sftp stream", err)
			}
			return
		}
		if !s.versionSeen {
			// The server's first packet, its VERSION, parsed or not:
			// the server has taken INIT.
			s.versionSeen = true
			close(s.versioned)
		}
		resp, err := sftp.ParseResponse(p.Raw)
		if err != nil {
			// A reply the gateway cannot read, it cannot pair with its
			// request either; the agent might read it as some request's.
			s.broken("parsing the server's sftp reply", err)
			return
		}
		out := p.Raw
		var discard []byte // the gateway's close of a handle it could not track
		s.mu.Lock()
		var done sftp.Completed
		var op sftpOp
		var ok bool
		c, err := s.tracker.Response(resp)
		switch {
		case errors.Is(err, sftp.ErrUnexpectedResponse):
			// A reply to no request the gateway forwarded, or a second
			// reply to one. Forwarded, it could give the agent a handle
			// no policy decision opened, or answer a request the agent
			// sends next in the server's place. Dropping it would keep
			// a session going with a server that breaks the protocol,
			// whose later replies the tracker can no longer trust to
			// pair with the requests they answer: the session ends.
			s.mu.Unlock()
			s.broken("the sftp server sent a reply to no pending request", err)
			return
		case err == nil && c.Internal:
			// The reply to the gateway's own request: not the agent's.
			if c.Request.Type == sftp.TypeRealpath {
				s.homeReply(c)
				why := s.homeErr
				s.mu.Unlock()
				if why != "" {
					s.sc.c.log.Warn("relative sftp paths are refused", "reason", why)
				}
				continue
			}
			s.mu.Unlock()
			if c.Status != sftp.StatusOK {
				s.sc.c.log.Warn("closing an sftp handle interlock could not track", "status", c.Status.String(), "message", c.Response.Message)
			}
			continue
		case err == nil:
			done = c
			op, ok = s.ops[resp.ID]
			delete(s.ops, resp.ID)
		case errors.Is(err, sftp.ErrTrackerFull) && resp.Type == sftp.TypeHandle:
			// A HANDLE the tracker cannot hold: every request on it
			// would be refused, so the agent does not get it. Its
			// open fails, and the handle is closed on the server.
			msg := "interlock: " + err.Error()
			out = sftp.StatusPacket(resp.ID, sftp.StatusFailure, msg)
			done = c
			done.Status, done.Response.Message = sftp.StatusFailure, msg
			op, ok = s.ops[resp.ID]
			delete(s.ops, resp.ID)
			var cerr error
			if discard, cerr = s.tracker.CloseUntracked(resp.Handle); cerr != nil {
				s.sc.c.log.Warn("leaving an sftp handle open on the server, unusable", "error", cerr)
			}
		case err != nil:
			// Unpaired all the same.
			s.mu.Unlock()
			s.broken("following the server's sftp reply", err)
			return
		}
		if ok && s.home == "" && isHomeQuery(done.Request) && len(done.Response.Names) == 1 && path.IsAbs(done.Response.Names[0]) {
			// Should the gateway's own question have gone unanswered:
			// known before the client can act on the answer, so a
			// relative path it sends next is resolved against it.
			s.home, s.homeErr = path.Clean(done.Response.Names[0]), ""
		}
		_, werr := s.sc.ch.Write(out)
		s.mu.Unlock()
		if discard != nil {
			// Not from this goroutine: a write to the server can wait for
			// the server to read, and the server for its replies to be
			// read.
			go s.upstream(discard)
		}
		if ok && recordedOp(done.Request) {
			s.record(done, op)
		}
		if werr != nil {
			return
		}
	}
}

// record appends one completed file operation to the session's log.
func (s *sftpRelay) record(done sftp.Completed, op sftpOp) {
	req := done.Request
	cmd := sftpCommand(req, op.decision)
	cmd.DurationMS = float64(time.Since(op.began).Microseconds()) / 1000
	cmd.Tag = done.Status.String()
	if req.Type == sftp.TypeClose && done.Status == sftp.StatusOK {
		cmd.Tag = "read " + strconv.FormatUint(done.BytesRead, 10) + " bytes, wrote " + strconv.FormatUint(done.BytesWritten, 10) + " bytes"
	}
	if done.Status != sftp.StatusOK {
		cmd.Error = done.Status.String()
		if done.Response.Message != "" {
			cmd.Error += ": " + done.Response.Message
		}
	}
	s.sc.c.endCommand(op.seq, cmd)
}

// sftpCommand is the recording of a file operation, without its outcome.
func sftpCommand(req sftp.Request, d policy.Decision) record.Command {
	return record.Command{Text: describeSFTP(req), Command: "sftp", Kind: fileOp(req), Decision: string(d.Action), Rule: d.Rule}
}

// extensionOps name OpenSSH's extensions as the operations they are, so a
// rule about "rename" also sees the posix-rename sftp and scp use.
var extensionOps = map[string]string{
	sftp.ExtPosixRename: "rename",
	sftp.ExtHardlink:    "hardlink",
	sftp.ExtFsync:       "fsync",
	sftp.ExtStatvfs:     "statvfs",
	sftp.ExtFstatvfs:    "fstatvfs",
	sftp.ExtLsetstat:    "lsetstat",
	sftp.ExtLimits:      "limits",
	sftp.ExtExpandPath:  "expand-path",
	sftp.ExtCopyData:    "copy-data",
	sftp.ExtHomeDir:     "home-directory",
	sftp.ExtUsersGroups: "users-groups-by-id",
}

// fileOp is ssh.file.op: the request's operation, with the extensions
// interlock reads by their plain names (others, extended:NAME, are refused
// before policy: see decide).
func fileOp(req sftp.Request) string {
	if req.Type == sftp.TypeExtended {
		if op, ok := extensionOps[req.Extension]; ok {
			return op
		}
	}
	return req.Op
}

// describeSFTP is a request as the recording shows it.
func describeSFTP(req sftp.Request) string {
	text := fileOp(req) + " " + req.Path
	switch {
	case req.Type == sftp.TypeOpen:
		text += " (" + req.Flags.String() + ")"
	case req.Path2 != "":
		text += " -> " + req.Path2
	}
	return text
}

// broken ends a channel whose sftp stream the gateway cannot follow: it
// cannot decide what it cannot read.
func (s *sftpRelay) broken(what string, err error) {
	c := s.sc.c
	c.log.Warn("ending an sftp session", "reason", what, "error", err)
	c.record(record.Command{Text: "sftp stream", Command: "sftp", Decision: string(policy.Deny),
		Message: fmt.Sprintf("interlock ended the sftp session: %s: %v", what, err)})
	s.sc.ch.Close()
	s.sc.up.Close()
}
