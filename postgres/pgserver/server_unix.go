//go:build unix

package pgserver

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// osUser is the account initdb and the server run as.
type osUser struct {
	name     string
	uid, gid int
	// switched is true when it differs from the current user (we are
	// root), so processes must drop to it and files be handed to it.
	switched bool
}

// serverOwner returns the current user, or, for root, the user postgres or
// else nobody: PostgreSQL refuses to run as root.
func serverOwner() (*osUser, error) {
	if os.Geteuid() != 0 {
		return &osUser{name: strconv.Itoa(os.Geteuid()), uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			continue
		}
		return &osUser{name: name, uid: uid, gid: gid, switched: true}, nil
	}
	return nil, fmt.Errorf("pgserver: running as root, and neither user postgres nor nobody exists to run the server as (%v): run as another user or create the user postgres", errs)
}

func (u *osUser) chown(path string) error {
	if !u.switched {
		return nil
	}
	return os.Chown(path, u.uid, u.gid)
}

func (u *osUser) procAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{
		// Own process group: a Ctrl-C meant for egressd must not reach the
		// server, which egressd stops itself, after its last write.
		Setpgid: true,
	}
	if u.switched {
		a.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}
	}
	setParentDeathSignal(a)
	return a
}
