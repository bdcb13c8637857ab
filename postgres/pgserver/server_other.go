//go:build !unix

package pgserver

import (
	"errors"
	"syscall"
)

type osUser struct {
	name     string
	switched bool
}

func serverOwner() (*osUser, error) {
	return nil, errors.New("pgserver: Start needs a Unix system: set DATABASE_URL (TEST_DATABASE_URL for tests) to a running server")
}

func (u *osUser) chown(string) error { return nil }

func (u *osUser) procAttr() *syscall.SysProcAttr { return nil }

func defaultDir() string { return "" }
