package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// binRoot is where Debian and Ubuntu install one directory per PostgreSQL major version.
const binRoot = "/usr/lib/postgresql"

// aptLockPath serialises installs when several processes (parallel test binaries on a
// fresh machine) find the binaries missing at the same time.
const aptLockPath = "/tmp/pgcluster-apt.lock"

// ErrNoBinaries means no PostgreSQL server binaries were found under /usr/lib/postgresql.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries under " + binRoot + "/*/bin")

// BinDir returns the bin directory of the highest PostgreSQL major version installed
// (the one holding initdb, pg_ctl, postgres and pgbench). It installs nothing; see
// EnsureBinDir.
func BinDir() (string, error) {
	return binDirFor("")
}

// binDirFor returns the bin directory of major version want, or of the highest version
// installed when want is empty.
func binDirFor(want string) (string, error) {
	dirs, err := filepath.Glob(filepath.Join(binRoot, "*", "bin"))
	if err != nil {
		return "", err
	}
	best, bestVersion := "", -1
	for _, dir := range dirs {
		name := filepath.Base(filepath.Dir(dir))
		version, err := strconv.Atoi(name)
		if err != nil || !isExecutable(filepath.Join(dir, "pg_ctl")) || !isExecutable(filepath.Join(dir, "initdb")) {
			continue
		}
		if want != "" {
			if name == want {
				return dir, nil
			}
			continue
		}
		if version > bestVersion {
			best, bestVersion = dir, version
		}
	}
	if best == "" {
		if want != "" {
			return "", fmt.Errorf("%w for PostgreSQL %s (install the postgresql-%s package)", ErrNoBinaries, want, want)
		}
		return "", ErrNoBinaries
	}
	return best, nil
}

// EnsureBinDir is BinDir, but when no binaries are found and the process runs as root it
// installs Debian's postgresql package with apt-get first. apt-get's output goes to log
// (nil discards it). Without root it returns an error saying what to install.
func EnsureBinDir(ctx context.Context, log io.Writer) (string, error) {
	dir, err := BinDir()
	if !errors.Is(err, ErrNoBinaries) {
		return dir, err
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w: install PostgreSQL's server package (on Debian: apt-get install postgresql) or run as root to have it installed", ErrNoBinaries)
	}
	unlock, err := lockFile(aptLockPath)
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have installed it while this one waited for the lock.
	if dir, err := BinDir(); err == nil {
		return dir, nil
	}
	if log == nil {
		log = io.Discard
	}
	fmt.Fprintln(log, "pgcluster: no PostgreSQL server binaries found, installing Debian's postgresql package")
	for _, args := range [][]string{{"update"}, {"install", "-y", "postgresql"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		var out tailBuffer
		cmd.Stdout = io.MultiWriter(log, &out)
		cmd.Stderr = cmd.Stdout
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("apt-get %v: %w\n%s", args, err, out.String())
		}
	}
	return BinDir()
}

// lockFile takes an exclusive flock on path, creating it, and returns the function that
// releases it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
