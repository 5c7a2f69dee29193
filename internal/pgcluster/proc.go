package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runner runs PostgreSQL's programs, as the postgres OS user when this process is root
// (initdb and postgres refuse to run as root).
type runner struct {
	binDir     string
	asPostgres bool
	uid, gid   int // of the postgres user, when asPostgres
	log        io.Writer
}

func newRunner(binDir string, log io.Writer) (*runner, error) {
	r := &runner{binDir: binDir, log: log, uid: -1, gid: -1}
	if r.log == nil {
		r.log = io.Discard
	}
	if os.Geteuid() != 0 {
		return r, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres OS user (created by Debian's postgresql package): %w", err)
	}
	r.asPostgres = true
	if r.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("postgres uid %q: %w", u.Uid, err)
	}
	if r.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, fmt.Errorf("postgres gid %q: %w", u.Gid, err)
	}
	return r, nil
}

// run runs program (a name in binDir) with args and returns its combined output, which is
// also copied to the log.
func (r *runner) run(ctx context.Context, program string, args ...string) (string, error) {
	path := filepath.Join(r.binDir, program)
	var cmd *exec.Cmd
	if r.asPostgres {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	// The postgres user may not be allowed into the caller's working directory.
	cmd.Dir = "/"
	var out tailBuffer
	cmd.Stdout = io.MultiWriter(r.log, &out)
	cmd.Stderr = cmd.Stdout
	// pg_ctl leaves a daemon behind; never wait on its inherited descriptors for long.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", program, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// chown gives path to the postgres user when the programs run as postgres.
func (r *runner) chown(path string) error {
	if !r.asPostgres {
		return nil
	}
	return os.Chown(path, r.uid, r.gid)
}

// ensureTraversable makes every ancestor of dir searchable by the postgres user, adding
// only the execute bit that user needs (never read or write).
func (r *runner) ensureTraversable(dir string) error {
	if !r.asPostgres {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("stat %s: no owner information", p)
		}
		mode := fi.Mode().Perm()
		var need fs.FileMode
		switch {
		case int(st.Uid) == r.uid:
			need = 0o100
		case int(st.Gid) == r.gid:
			need = 0o010
		default:
			need = 0o001
		}
		if mode&need == 0 {
			fmt.Fprintf(r.log, "pgcluster: adding search permission on %s for the postgres user\n", p)
			if err := os.Chmod(p, mode|need); err != nil {
				return err
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// pidFile is what postmaster.pid says about a server: its process and TCP port.
type pidFile struct {
	pid  int
	port int
}

// readPidFile reads dataDir/postmaster.pid; ok is false when there is none.
func readPidFile(dataDir string) (pf pidFile, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return pf, false, nil
	}
	if err != nil {
		return pf, false, err
	}
	// A server writes the file in steps: a short one belongs to a server that is starting.
	lines := strings.Split(string(b), "\n")
	pf.pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) >= 4 {
		pf.port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	return pf, true, nil
}

// processesIn returns the live processes whose working directory is dir: a postmaster and
// all its children change to their data directory. Zombies and processes this one may
// not inspect are not listed.
func processesIn(dir string) []int {
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		want = dir
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == want && !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processStart returns the start time of pid (clock ticks since boot), which tells a
// process apart from a later one that reuses its pid.
func processStart(pid int) (string, error) {
	fields, err := procStat(pid)
	if err != nil {
		return "", err
	}
	const startTimeField = 22 - 3 // field 22 in proc(5), counted from field 3
	if len(fields) <= startTimeField {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return fields[startTimeField], nil
}

// isZombie reports whether pid has exited but not been reaped (a daemon's parent, init,
// may take a while).
func isZombie(pid int) bool {
	fields, err := procStat(pid)
	return err == nil && len(fields) > 0 && fields[0] == "Z"
}

// procStat returns the fields of /proc/pid/stat from the third (the state) on.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name (field 2) may hold spaces; the fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// tailBuffer keeps the last tailMax bytes written to it, for error messages.
type tailBuffer struct{ b []byte }

const tailMax = 8 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.b)) }

// fileTail returns the last lines of a file (a server log), or a note saying it could not.
func fileTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return path + ":\n" + strings.Join(all, "\n")
}
