// Command withpg runs a command with a private PostgreSQL server.
//
//	withpg [-data DIR] [-keep] [-fast] [-v] -- CMD ARGS...
//	withpg -data DIR -stop
//
// It starts a server (in a temporary directory unless -data), runs CMD with DATABASE_URL
// set to the server's postgres database and PGBIN to the directory of its binaries
// (pgbench, psql), stops the server and exits with CMD's status. SIGINT and SIGTERM are
// passed on to CMD.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/passnum/passnum/internal/pgcluster"
)

func main() {
	os.Exit(run())
}

func run() int {
	data := flag.String("data", "", "keep the server's data in `DIR` (reused by later runs); default: a temporary directory removed at exit")
	keep := flag.Bool("keep", false, "leave the server running after CMD exits (needs -data); later runs with the same -data reuse it")
	fast := flag.Bool("fast", false, "turn fsync, synchronous_commit and full_page_writes off: faster, for tests only")
	stop := flag.Bool("stop", false, "stop the server running from -data DIR, if any, and exit")
	verbose := flag.Bool("v", false, "show the output of initdb and pg_ctl")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: withpg [-data DIR] [-keep] [-fast] [-v] -- CMD ARGS...\n       withpg -data DIR -stop\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()

	var log io.Writer
	if *verbose {
		log = os.Stderr
	}
	switch {
	case *stop:
		if *data == "" || len(args) > 0 {
			flag.Usage()
			return 2
		}
		if err := pgcluster.StopDataDir(context.Background(), *data, log); err != nil {
			fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
			return 1
		}
		return 0
	case len(args) == 0 || *keep && *data == "":
		flag.Usage()
		return 2
	}

	// Caught from here on, so that withpg always gets to stop the server; while it starts,
	// a signal cancels the start.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	// An install on a fresh machine takes a while: always show it.
	if _, err := pgcluster.EnsureBinDir(ctx, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
		return 1
	}
	began := time.Now()
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		DataDir:    *data,
		Persistent: *data != "",
		FastUnsafe: *fast,
		Log:        log,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
		return 1
	}
	url := cluster.URL("postgres")
	fmt.Fprintf(os.Stderr, "withpg: PostgreSQL ready in %v at %s (data %s)\n", time.Since(began).Round(time.Millisecond), url, cluster.DataDir())
	// Signals now go to the command; the server is stopped once it has exited.
	cancel()

	code := runCommand(args, url, cluster.BinDir(), signals)

	if *keep {
		fmt.Fprintf(os.Stderr, "withpg: left PostgreSQL running at %s (stop it with: withpg -data %s -stop)\n", url, cluster.DataDir())
		return code
	}
	if err := cluster.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "withpg: stop PostgreSQL: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// runCommand runs args with the server in its environment, passing on the signals
// received, and returns its exit status (128+n when signal n killed it, as shells do).
func runCommand(args []string, url, binDir string, signals <-chan os.Signal) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "PGBIN="+binDir)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
		return 127
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-signals:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if status, ok := exit.Sys().(syscall.WaitStatus); ok && status.Signaled() {
			return 128 + int(status.Signal())
		}
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "withpg: %v\n", err)
		return 1
	}
}
