package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/interlock-dev/interlock/record"
)

// ErrRecordingFailed ends a session whose recording cannot be written: a
// command must not run unrecorded.
var ErrRecordingFailed = errors.New("the session recording failed")

// RecordStart is the session_start event of s: who opened the session and
// where it goes, plus the protocol's own attributes.
func RecordStart(s *Session, protocol string, attrs map[string]string) record.Start {
	caller := s.Caller
	client := ""
	if s.Client != nil {
		client = addrString(s.Client.RemoteAddr())
	}
	return record.Start{
		Protocol:    protocol,
		Target:      s.Target.Name,
		Destination: s.Destination.String(),
		Client:      client,
		Workload:    caller.Workload,
		Subject:     caller.Identity.Subject,
		Groups:      slices.Clone(caller.Identity.Groups),
		Issuer:      caller.Identity.Issuer,
		PID:         caller.PID,
		UID:         caller.UID,
		Executable:  caller.Executable,
		CgroupID:    caller.CgroupID,
		Attributes:  attrs,
	}
}

// WatchRecording ends a session (through cancel, with ErrRecordingFailed)
// when its recording fails. The returned function stops the watch.
func WatchRecording(rec *record.Recorder, cancel context.CancelCauseFunc, log *slog.Logger) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-rec.Failed():
			err := rec.Err()
			log.Error("the session recording failed; ending the session", "error", err)
			cancel(fmt.Errorf("%w: %w", ErrRecordingFailed, err))
		case <-done:
		}
	}()
	return func() { close(done) }
}
