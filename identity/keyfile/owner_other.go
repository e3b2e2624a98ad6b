//go:build !unix

package keyfile

import "io/fs"

// foreignOwner cannot tell owners apart outside Unix; the mode check is all
// there is.
func foreignOwner(fs.FileInfo) (uid int, foreign bool) { return 0, false }
