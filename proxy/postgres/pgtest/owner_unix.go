//go:build unix

package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// owner is the OS user the server runs as: the postgres user when the test
// runs as root (postgres refuses root), else the test's own user.
type owner struct {
	asOther  bool
	uid, gid uint32
}

func serverOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return owner{}, errors.New("running as root, and there is no postgres OS user to run the server as")
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return owner{}, fmt.Errorf("postgres OS user has ids %q/%q", u.Uid, u.Gid)
	}
	return owner{asOther: true, uid: uint32(uid), gid: uint32(gid)}, nil
}

// apply makes cmd run as the owner, and die with the test process.
func (o owner) apply(cmd *exec.Cmd) {
	cmd.SysProcAttr = sysProcAttr()
	if o.asOther {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: o.uid, Gid: o.gid}
	}
}

// chown hands path, and everything below it, to the owner.
func (o owner) chown(path string) error {
	if !o.asOther {
		return nil
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(o.uid), int(o.gid))
	})
}
