package adminauth

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
)

// secretFileRules says what readSecretFile refuses.
type secretFileRules struct {
	what      string      // "admin tokens file", "token file": names the file in errors
	forbidden fs.FileMode // permission bits that must be clear
	chmod     string      // the mode to suggest, "600"
	regular   bool        // refuse pipes and devices
	owner     bool        // refuse files owned by another non-root user
	maxSize   int64
}

// readSecretFile reads a file holding secrets after checking, on the open
// descriptor so a swap between check and read cannot slip by, that nobody
// else can read or change it.
func readSecretFile(path string, rules secretFileRules) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if rules.regular && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file", rules.what, path)
	}
	if perm := fi.Mode().Perm(); perm&rules.forbidden != 0 {
		return nil, fmt.Errorf("%s %s has mode %04o, which lets others read or change it; run: chmod %s %s: %w",
			rules.what, path, perm, rules.chmod, path, ErrInsecureFile)
	}
	if rules.owner {
		if uid, foreign := foreignOwner(fi); foreign {
			owner := "root"
			if euid := os.Geteuid(); euid != 0 {
				owner = strconv.Itoa(euid)
			}
			return nil, fmt.Errorf("%s %s belongs to uid %d, not to root or the user running the gateway; run: chown %s %s: %w",
				rules.what, path, uid, owner, path, ErrInsecureFile)
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, rules.maxSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > rules.maxSize {
		return nil, fmt.Errorf("%s %s is larger than %d bytes", rules.what, path, rules.maxSize)
	}
	return data, nil
}
