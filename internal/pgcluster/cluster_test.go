package pgcluster

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// logWriter sends the clusters' output to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	opts.Log = logWriter{t}
	began := time.Now()
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("cluster on port %d started in %v", c.Port(), time.Since(began))
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func setting(t *testing.T, conn *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(t.Context(), "select current_setting($1)", name).Scan(&v); err != nil {
		t.Fatalf("setting %s: %v", name, err)
	}
	return v
}

func TestThrowawayStartStop(t *testing.T) {
	t.Parallel()
	c := start(t, Options{FastUnsafe: true})
	conn := connect(t, c.URL("postgres"))

	for name, want := range map[string]string{
		"listen_addresses": "127.0.0.1",
		"fsync":            "off",
		"max_connections":  "200",
		"server_encoding":  "UTF8",
	} {
		if got := setting(t, conn, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.BinDir(), "pgbench")); err != nil {
		t.Errorf("BinDir %s has no pgbench: %v", c.BinDir(), err)
	}
	conn.Close(t.Context())

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(c.DataDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("data directory %s still there after Stop (stat: %v)", c.DataDir(), err)
	}
	if _, err := pgx.Connect(t.Context(), c.URL("postgres")); err == nil {
		t.Error("server still accepts connections after Stop")
	}
}

func TestDurableByDefault(t *testing.T) {
	t.Parallel()
	c := start(t, Options{})
	conn := connect(t, c.URL("postgres"))
	for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		if got := setting(t, conn, name); got != "on" {
			t.Errorf("%s = %q, want on", name, got)
		}
	}
}

func TestSettings(t *testing.T) {
	t.Parallel()
	c := start(t, Options{FastUnsafe: true, Settings: []string{"max_connections=150", "min_wal_size=1GB", "fsync=on"}})
	conn := connect(t, c.URL("postgres"))
	for name, want := range map[string]string{
		"max_connections": "150",   // overrides the base settings
		"min_wal_size":    "1GB",   // adds to them
		"fsync":           "off",   // FastUnsafe has the last word
		"shared_buffers":  "256MB", // base settings not overridden stay
		"wal_compression": "pglz",  // "on", as the server names it
	} {
		if got := setting(t, conn, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestThrowawayRefusesNonEmptyDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keep := filepath.Join(dir, "precious")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Start(t.Context(), Options{DataDir: dir, Log: logWriter{t}}); err == nil {
		c.Stop()
		t.Fatal("Start accepted a non-empty directory for a throwaway cluster")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("Start touched the files of the directory it refused: %v", err)
	}
}

func TestPersistentRestartKeepsDataAndPort(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pg")
	first := start(t, Options{DataDir: dir, Persistent: true, FastUnsafe: true})
	conn := connect(t, first.URL("postgres"))
	if _, err := conn.Exec(t.Context(), "create table kept (v text); insert into kept values ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())
	if err := first.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		t.Fatalf("persistent data directory gone after Stop: %v", err)
	}

	second := start(t, Options{DataDir: dir, Persistent: true, FastUnsafe: true})
	if second.Port() != first.Port() {
		t.Errorf("port after restart = %d, want the remembered %d", second.Port(), first.Port())
	}
	assertKept(t, second)
}

func TestPersistentReusesRunningServer(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pg")
	owner := start(t, Options{DataDir: dir, Persistent: true, FastUnsafe: true})

	reuser := start(t, Options{DataDir: dir, Persistent: true, FastUnsafe: true})
	if reuser.Port() != owner.Port() {
		t.Fatalf("second Start on port %d, want the running server's %d", reuser.Port(), owner.Port())
	}
	if err := reuser.Stop(); err != nil {
		t.Fatalf("Stop of the reusing cluster: %v", err)
	}
	// The server belongs to the first Cluster: it must still be up.
	connect(t, owner.URL("postgres"))
}

func TestPersistentRecoversFromKilledServer(t *testing.T) {
	t.Parallel()
	// Durable settings: with synchronous_commit off the last commits die with the server.
	dir := filepath.Join(t.TempDir(), "pg")
	first := start(t, Options{DataDir: dir, Persistent: true})
	conn := connect(t, first.URL("postgres"))
	if _, err := conn.Exec(t.Context(), "create table kept (v text); insert into kept values ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())
	pf, ok, err := readPidFile(dir)
	if err != nil || !ok {
		t.Fatalf("read postmaster.pid: ok=%v err=%v", ok, err)
	}
	if err := syscall.Kill(pf.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	second := start(t, Options{DataDir: dir, Persistent: true})
	assertKept(t, second)
}

func assertKept(t *testing.T, c *Cluster) {
	t.Helper()
	conn := connect(t, c.URL("postgres"))
	var v string
	if err := conn.QueryRow(t.Context(), "select v from kept").Scan(&v); err != nil || v != "still here" {
		t.Fatalf("row after restart: %q, %v", v, err)
	}
}

func TestStopDataDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pg")
	c := start(t, Options{DataDir: dir, Persistent: true, FastUnsafe: true})
	if err := StopDataDir(t.Context(), dir, logWriter{t}); err != nil {
		t.Fatalf("StopDataDir: %v", err)
	}
	if _, err := pgx.Connect(t.Context(), c.URL("postgres")); err == nil {
		t.Error("server still accepts connections after StopDataDir")
	}
	if err := StopDataDir(t.Context(), dir, logWriter{t}); err != nil {
		t.Errorf("StopDataDir of a stopped server: %v", err)
	}
}
