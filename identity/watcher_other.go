//go:build !linux

package identity

import "log/slog"

// dirWatch has nothing to watch with on this system: Run resolves at its
// interval only.
type dirWatch struct{}

func newDirWatch(*slog.Logger) *dirWatch   { return &dirWatch{} }
func (*dirWatch) created() <-chan struct{} { return nil }
func (*dirWatch) set(string, []Guard)      {}
func (*dirWatch) close()                   {}
