package main

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/interlock-dev/interlock/cmd/interlock/config"
	"github.com/interlock-dev/interlock/redirect"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// sweeper closes the connections workloads hold open that the data path
// would not let them make now (redirect.Datapath.Sweep): it runs once the
// data path is in place and after every change of the workloads' cgroups
// or of the targets' addresses, since the kernel decides only at connect().
type sweeper struct {
	dp     *redirect.Datapath
	cfg    *config.Config
	logger *slog.Logger
	closed *prometheus.CounterVec

	mu      sync.Mutex
	running bool
	again   string // why of a sweep asked for while one ran
	stopped bool   // no more sweeps: the data path is being closed
	done    sync.WaitGroup

	// Connections this kernel could not abort (no
	// CONFIG_INET_DIAG_DESTROY), logged when first found, not at every
	// sweep; pruned to those the last sweep found.
	unabortable map[redirect.Closed]bool
}

func newSweeper(dp *redirect.Datapath, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*sweeper, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "interlock_closed_connections_total",
		Help: "Connections workloads had open that the gateway closed because the data path would now refuse or redirect them (opened before the gateway attached, before their cgroup was the workload's, or before their destination was a target). target is empty for destinations the workload's egress refuses and for the gateway's own addresses.",
	}, []string{"workload", "target"})
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("registering interlock_closed_connections_total: %w", err)
	}
	return &sweeper{dp: dp, cfg: cfg, logger: logger, closed: c}, nil
}

// sweep starts a sweep and returns: it is called from the workload
// watcher's pass and the target resolver's, and a sweep reads every
// descriptor of every workload process (a tenth of a second or more for
// thousands), which would hold up the pass that a connection from a new
// cgroup waits for, and the guards the pass writes after. Asked for while
// one runs, it runs once more after it: a sweep reads the maps as they
// are then, so one covers every change before it started.
func (s *sweeper) sweep(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	if s.running {
		s.again = why
		return
	}
	s.running = true
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			s.sweepNow(why)
			s.mu.Lock()
			if s.again == "" || s.stopped {
				s.running = false
				s.mu.Unlock()
				return
			}
			why, s.again = s.again, ""
			s.mu.Unlock()
		}
	}()
}

// stop waits for a sweep under way and starts no more, before the data
// path's handles are closed.
func (s *sweeper) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.done.Wait()
}

// sweepNow closes what it finds (or, with gateway.open_connections:
// report, only reports it) and logs each one; why says what changed.
func (s *sweeper) sweepNow(why string) {
	find := s.dp.Sweep
	if s.cfg.Gateway.OpenConnections == "report" {
		find = s.dp.SweepReport
	}
	closed, err := find()
	if err != nil {
		s.logger.Warn("looking for connections workloads opened before the data path decided them", "after", why, "error", err)
	}
	unabortable := map[redirect.Closed]bool{}
	defer func() { s.unabortable = unabortable }()
	for _, c := range closed {
		workload, target := fmt.Sprintf("unknown-%d", c.WorkloadID), ""
		if w := s.cfg.WorkloadByID(c.WorkloadID); w != nil {
			workload = w.Name
		}
		reason := "its destination is refused to the workload (its egress rules, or the gateway's own addresses)"
		if c.TargetID != 0 {
			target = fmt.Sprintf("unknown-%d", c.TargetID)
			if t := s.cfg.TargetByID(c.TargetID); t != nil {
				target = t.Name
			}
			reason = "it reached target " + target + " without the gateway"
		}
		attrs := []any{"workload", workload, "target", target, "local", c.Local, "remote", c.Remote, "uid", c.UID, "cgroup_id", c.CgroupID, "after", why}
		if c.Reported {
			s.logger.Warn("a workload has a connection open that the data path would now refuse or redirect, left open (gateway.open_connections: report): "+reason, attrs...)
			continue
		}
		if c.Err != nil {
			if errors.Is(c.Err, unix.EOPNOTSUPP) {
				key := c
				key.Err = nil
				unabortable[key] = true
				if s.unabortable[key] {
					continue
				}
				s.logger.Error("cannot close a workload's connection: this kernel cannot abort sockets (CONFIG_INET_DIAG_DESTROY); restart the workload", append(attrs, "reason", reason)...)
			} else {
				s.logger.Error("cannot close a workload's connection", append(attrs, "reason", reason, "error", c.Err)...)
			}
			continue
		}
		s.closed.WithLabelValues(workload, target).Inc()
		s.logger.Warn("closed a connection the workload opened before the data path decided it: "+reason, attrs...)
	}
}
