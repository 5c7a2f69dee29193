// Package pgcluster runs a private PostgreSQL server from the distribution's binaries,
// without Docker: a throwaway one for tests, or one kept in a data directory for
// `make run` and benchmarks.
//
// The server listens on 127.0.0.1 only, on a free port, trusts every local connection
// (user postgres, no password) and keeps its unix socket and its log ("log") in the data
// directory. When this process is root, the data directory belongs to the postgres OS
// user and initdb, pg_ctl and postgres run as that user.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Options says where and how to run the server.
type Options struct {
	// DataDir is the data directory. Empty means a new temporary directory that Stop
	// removes.
	DataDir string
	// Persistent keeps DataDir across runs: an initialised directory is reused, a server
	// already running from it is reused (and left running by Stop), a stale
	// postmaster.pid is cleared, and the port is remembered in the directory so that a
	// restart keeps it while it is free. Without Persistent, DataDir must be missing or
	// empty and Stop removes it.
	Persistent bool
	// FastUnsafe turns off fsync, synchronous_commit and full_page_writes (and syncing
	// in initdb). A crash of the machine can then lose or corrupt data: for tests only.
	FastUnsafe bool
	// Settings are further server settings ("name=value"), after the base ones (and so
	// overriding them) and before those of FastUnsafe.
	Settings []string
	// Log receives the output of initdb, pg_ctl and apt-get, and notes about recovery.
	// Nil discards it; failures quote the relevant output in their error anyway.
	Log io.Writer
}

// Cluster is a running server.
type Cluster struct {
	r        *runner
	dataDir  string
	port     int
	started  bool   // this Cluster started the server, so Stop stops it
	removeAt string // directory Stop removes after stopping (throwaway clusters)

	stopOnce sync.Once
	stopErr  error
}

// Settings every server gets. max_connections leaves room for parallel test packages,
// each with a few pools.
var baseSettings = []string{
	"max_connections=200",
	"shared_buffers=256MB",
	// Full-page images compressed in the WAL: a redemption writes 8–10 % less WAL and the
	// commits' flushes, inside the programme's critical section, are shorter (bench/README.md,
	// session 6). "on" is pglz, which every supported version accepts.
	"wal_compression=on",
}

// fastUnsafeSettings trade durability for speed; tests only.
var fastUnsafeSettings = []string{
	"fsync=off",
	"synchronous_commit=off",
	"full_page_writes=off",
}

const (
	logName      = "log"
	portFileName = "pgcluster.port"
	ownerName    = "owner"          // in a temporary cluster's parent directory
	tempPattern  = "pgcluster-*"    // temporary clusters' parent directories
	startTimeout = 60 * time.Second // for pg_ctl -w
	startTries   = 5                // ports tried when another process takes ours first
)

// Start runs a server as opts says and waits until it accepts connections.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	binDir, err := EnsureBinDir(ctx, opts.Log)
	if err != nil {
		return nil, err
	}
	r, err := newRunner(binDir, opts.Log)
	if err != nil {
		return nil, err
	}
	c := &Cluster{r: r}
	if opts.DataDir == "" {
		if opts.Persistent {
			return nil, errors.New("pgcluster: a persistent cluster needs a data directory")
		}
		reapOrphans(ctx, opts.Log)
		if c.dataDir, err = c.makeTempDir(); err != nil {
			if c.removeAt != "" {
				os.RemoveAll(c.removeAt)
			}
			return nil, err
		}
	} else {
		if c.dataDir, err = filepath.Abs(opts.DataDir); err != nil {
			return nil, err
		}
	}
	if strings.ContainsAny(c.dataDir, "\"`$\\\n") {
		return nil, fmt.Errorf("pgcluster: data directory %q: quotes, backslashes, $ and newlines are not supported", c.dataDir)
	}
	if err := c.start(ctx, opts); err != nil {
		if c.removeAt != "" {
			os.RemoveAll(c.removeAt)
		}
		return nil, err
	}
	return c, nil
}

// makeTempDir creates the parent directory of a throwaway cluster, records this process
// as its owner (so a later Start can clean up after a killed process) and returns the
// data directory inside it.
func (c *Cluster) makeTempDir() (string, error) {
	parent, err := os.MkdirTemp("", tempPattern)
	if err != nil {
		return "", err
	}
	c.removeAt = parent
	start, err := processStart(os.Getpid())
	if err != nil {
		return "", err
	}
	owner := fmt.Sprintf("%d %s\n", os.Getpid(), start)
	if err := os.WriteFile(filepath.Join(parent, ownerName), []byte(owner), 0o644); err != nil {
		return "", err
	}
	if c.r.asPostgres {
		if err := os.Chmod(parent, 0o711); err != nil {
			return "", err
		}
	}
	return filepath.Join(parent, "data"), nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	initialised, err := c.prepareDir(opts.Persistent)
	if err != nil {
		return err
	}
	if initialised {
		if err := c.useVersionOfDataDir(); err != nil {
			return err
		}
		if running, err := c.adoptRunning(ctx); err != nil || running {
			return err
		}
	} else if err := c.initdb(ctx, opts.FastUnsafe); err != nil {
		return err
	}

	remembered := 0
	if opts.Persistent {
		remembered = c.rememberedPort()
	}
	var lastErr error
	for try := 0; try < startTries; try++ {
		port := remembered
		if try > 0 || !portFree(port) {
			if port, err = freePort(); err != nil {
				return err
			}
		}
		c.port = port
		if opts.Persistent {
			if err := c.writePortFile(); err != nil {
				return err
			}
		}
		lastErr = c.pgCtlStart(ctx, opts)
		if lastErr == nil {
			c.started = true
			return nil
		}
		if !strings.Contains(fileTail(c.logPath(), 20), "could not create any TCP/IP sockets") {
			return lastErr
		}
	}
	return lastErr
}

// prepareDir creates the data directory if needed, gives it to the postgres user when
// running as root, and reports whether it already holds a cluster.
func (c *Cluster) prepareDir(persistent bool) (initialised bool, err error) {
	entries, err := os.ReadDir(c.dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(c.dataDir), 0o755); err != nil {
			return false, err
		}
		if err := os.Mkdir(c.dataDir, 0o700); err != nil {
			return false, err
		}
		if !persistent && c.removeAt == "" {
			c.removeAt = c.dataDir
		}
	case err != nil:
		return false, err
	case len(entries) > 0:
		if !persistent {
			return false, fmt.Errorf("pgcluster: data directory %s is not empty (a throwaway cluster needs a new directory; use a persistent one to reuse it)", c.dataDir)
		}
		if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err != nil {
			return false, fmt.Errorf("pgcluster: %s is neither empty nor a PostgreSQL data directory", c.dataDir)
		}
		initialised = true
	case !persistent && c.removeAt == "":
		// An empty directory given for a throwaway cluster: Stop empties it again.
		c.removeAt = c.dataDir
	}
	if err := c.r.ensureTraversable(c.dataDir); err != nil {
		return false, err
	}
	if !initialised {
		// initdb insists on 0700 or 0750.
		if err := os.Chmod(c.dataDir, 0o700); err != nil {
			return false, err
		}
		if err := c.r.chown(c.dataDir); err != nil {
			return false, err
		}
	}
	return initialised, nil
}

// useVersionOfDataDir switches to the binaries of the major version that created the data
// directory, which are the only ones able to run it.
func (c *Cluster) useVersionOfDataDir() error {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION"))
	if err != nil {
		return err
	}
	version := strings.TrimSpace(string(b))
	if filepath.Base(filepath.Dir(c.r.binDir)) == version {
		return nil
	}
	dir, err := binDirFor(version)
	if err != nil {
		return fmt.Errorf("pgcluster: %s was created by PostgreSQL %s: %w", c.dataDir, version, err)
	}
	c.r.binDir = dir
	return nil
}

// adoptRunning reuses a server already running from the data directory, or clears the
// lock files that a dead one left behind once none of its processes is left.
func (c *Cluster) adoptRunning(ctx context.Context) (bool, error) {
	pf, ok, err := readPidFile(c.dataDir)
	if err != nil || !ok {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		left := processesIn(c.dataDir)
		switch {
		case slices.Contains(left, pf.pid) && pf.port != 0:
			c.port = pf.port
			conn, err := pgconn.Connect(ctx, c.URL("postgres"))
			if err == nil {
				fmt.Fprintf(c.r.log, "pgcluster: reusing the server (pid %d) already running from %s on port %d\n", pf.pid, c.dataDir, c.port)
				return true, conn.Close(ctx)
			}
		case slices.Contains(left, pf.pid):
			// Starting: the port is not in postmaster.pid yet.
			if pf, _, err = readPidFile(c.dataDir); err != nil {
				return false, err
			}
		case len(left) == 0:
			fmt.Fprintf(c.r.log, "pgcluster: removing the lock files that dead server (pid %d) left in %s\n", pf.pid, c.dataDir)
			locks, _ := filepath.Glob(filepath.Join(c.dataDir, ".s.PGSQL.*.lock"))
			for _, p := range append(locks, filepath.Join(c.dataDir, "postmaster.pid")) {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return false, err
				}
			}
			return false, nil
		}
		// Otherwise the postmaster is gone and its children, which notice within moments,
		// are still exiting.
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("pgcluster: server of %s (pid %d, port %d) neither ready nor gone; processes in it: %v", c.dataDir, pf.pid, pf.port, left)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) initdb(ctx context.Context, fastUnsafe bool) error {
	args := []string{
		"-D", c.dataDir,
		"-U", "postgres",
		"--auth=trust",
		"-E", "UTF8",
		"--locale=" + initdbLocale(ctx),
	}
	if fastUnsafe {
		args = append(args, "--no-sync")
	}
	_, err := c.r.run(ctx, "initdb", args...)
	return err
}

// initdbLocale is C.UTF-8 where the C library has it, otherwise C.
func initdbLocale(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "locale", "-a").Output()
	if err == nil {
		for _, l := range strings.Fields(strings.ToLower(string(out))) {
			if l == "c.utf8" || l == "c.utf-8" {
				return "C.UTF-8"
			}
		}
	}
	return "C"
}

func (c *Cluster) pgCtlStart(ctx context.Context, opts Options) error {
	settings := append([]string{
		"listen_addresses=127.0.0.1",
		"port=" + strconv.Itoa(c.port),
		"unix_socket_directories=" + c.socketDir(),
	}, baseSettings...)
	settings = append(settings, opts.Settings...)
	if opts.FastUnsafe {
		settings = append(settings, fastUnsafeSettings...)
	}
	var o strings.Builder
	for i, s := range settings {
		if i > 0 {
			o.WriteByte(' ')
		}
		// pg_ctl hands -o to the shell.
		o.WriteString("-c " + shellQuote(s))
	}
	_, err := c.r.run(ctx, "pg_ctl", "start",
		"-D", c.dataDir,
		"-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-l", c.logPath(),
		"-o", o.String())
	if err == nil {
		return nil
	}
	// pg_ctl may give up while the server is still coming up; leave nothing behind.
	if _, ok, _ := readPidFile(c.dataDir); ok {
		c.r.run(context.WithoutCancel(ctx), "pg_ctl", "stop", "-D", c.dataDir, "-m", "immediate", "-w")
	}
	return fmt.Errorf("pgcluster: start server in %s on port %d: %w\n%s", c.dataDir, c.port, err, fileTail(c.logPath(), 20))
}

// socketDir is the data directory, or "" (no unix socket) when the socket's path would
// exceed the 107 bytes a unix socket address holds.
func (c *Cluster) socketDir() string {
	if len(c.dataDir)+len("/.s.PGSQL.65535.lock") > 107 {
		return ""
	}
	return c.dataDir
}

func (c *Cluster) logPath() string { return filepath.Join(c.dataDir, logName) }

func (c *Cluster) rememberedPort() int {
	b, err := os.ReadFile(filepath.Join(c.dataDir, portFileName))
	if err != nil {
		return 0
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || port <= 0 || port > 65535 {
		return 0
	}
	return port
}

func (c *Cluster) writePortFile() error {
	path := filepath.Join(c.dataDir, portFileName)
	if err := os.WriteFile(path, []byte(strconv.Itoa(c.port)+"\n"), 0o600); err != nil {
		return err
	}
	return c.r.chown(path)
}

// portFree reports whether 127.0.0.1:port can be bound now.
func portFree(port int) bool {
	if port == 0 {
		return false
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// freePort asks the kernel for a port that is free on 127.0.0.1 now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// URL is the connection URL of database db as the superuser postgres.
func (c *Cluster) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port is the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir is the server's data directory (its log is the file "log" in it).
func (c *Cluster) DataDir() string { return c.dataDir }

// BinDir is the directory of the binaries that run the server (pgbench and psql too).
func (c *Cluster) BinDir() string { return c.r.binDir }

// Stop stops the server if Start started it and it still runs (a reused running server
// of a persistent cluster is left running) and removes a throwaway cluster's directory. Later calls
// return the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if _, running, _ := readPidFile(c.dataDir); c.started && running {
			_, c.stopErr = c.r.run(context.Background(), "pg_ctl", "stop", "-D", c.dataDir, "-m", "fast", "-w",
				"-t", strconv.Itoa(int(startTimeout/time.Second)))
		}
		if c.removeAt != "" && c.stopErr == nil {
			c.stopErr = os.RemoveAll(c.removeAt)
		}
	})
	return c.stopErr
}

// StopDataDir stops the server running from dataDir, if any (for `make distclean` and
// `withpg -stop`). A missing directory or a stopped server is not an error.
func StopDataDir(ctx context.Context, dataDir string, log io.Writer) error {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	pf, ok, err := readPidFile(dataDir)
	if err != nil || !ok {
		return err
	}
	if !slices.Contains(processesIn(dataDir), pf.pid) {
		return nil
	}
	binDir, err := EnsureBinDir(ctx, log)
	if err != nil {
		return err
	}
	r, err := newRunner(binDir, log)
	if err != nil {
		return err
	}
	c := &Cluster{r: r, dataDir: dataDir}
	if err := c.useVersionOfDataDir(); err != nil {
		return err
	}
	_, err = r.run(ctx, "pg_ctl", "stop", "-D", dataDir, "-m", "fast", "-w")
	return err
}

// reapOrphans stops the servers and removes the directories of throwaway clusters whose
// owning process died without calling Stop (a test binary killed by a timeout, say).
// Clusters of live processes are left alone; failures are only logged.
func reapOrphans(ctx context.Context, log io.Writer) {
	if log == nil {
		log = io.Discard
	}
	parents, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPattern))
	for _, parent := range parents {
		b, err := os.ReadFile(filepath.Join(parent, ownerName))
		if err != nil {
			continue
		}
		var pid int
		var start string
		if _, err := fmt.Sscanf(string(b), "%d %s", &pid, &start); err != nil {
			continue
		}
		if now, err := processStart(pid); err == nil && now == start {
			continue
		}
		dataDir := filepath.Join(parent, "data")
		if err := StopDataDir(ctx, dataDir, log); err != nil {
			fmt.Fprintf(log, "pgcluster: stop orphaned cluster %s: %v\n", dataDir, err)
			continue
		}
		if err := os.RemoveAll(parent); err != nil {
			fmt.Fprintf(log, "pgcluster: remove orphaned cluster %s: %v\n", parent, err)
			continue
		}
		fmt.Fprintf(log, "pgcluster: removed the cluster %s left by dead process %d\n", parent, pid)
	}
}
