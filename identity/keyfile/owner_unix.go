//go:build unix

package keyfile

import (
	"io/fs"
	"os"
	"syscall"
)

// foreignOwner returns the owner of the file fi describes when it is
// neither root nor this process's effective user.
func foreignOwner(fi fs.FileInfo) (uid int, foreign bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	uid = int(st.Uid)
	return uid, uid != 0 && uid != os.Geteuid()
}
