// Command passnumd is the passnum server.
//
//	passnumd [serve] [flags]   apply migrations, then serve gRPC (the default)
//	passnumd migrate           apply migrations and exit
//	passnumd dev [flags]       local development: private PostgreSQL under var/pg, dev keys
//	                           under var/keys, tokens for every role, then serve (make run)
//
// Flags fall back to environment variables (shown in -h); DATABASE_URL is read from the
// environment only, so that its password never shows in the process list.
//
// serve runs the garbage collector less often than Go's default, within a soft memory
// limit (-gc-percent 400, -memory-limit 100MiB), unless GOGC or GOMEMLIMIT is set: see gc.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/dbmigrate"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = []command{
	{"serve", "apply migrations, then serve gRPC (default)", runServe},
	{"migrate", "apply migrations and exit", runMigrate},
	{"dev", "local development server with a private PostgreSQL and dev tokens (make run)", runDev},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:])
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "passnumd:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "-help", "--help":
			usage()
			return flag.ErrHelp
		}
		for _, c := range commands {
			if c.name == args[0] {
				return c.run(ctx, args[1:])
			}
		}
		if !strings.HasPrefix(args[0], "-") {
			usage()
			return fmt.Errorf("unknown command %q", args[0])
		}
	}
	return runServe(ctx, args)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: passnumd [command] [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun passnumd <command> -h for its flags.")
}

// serveFlags are the flags of serve and dev.
type serveFlags struct {
	listen          string
	logLevel        string
	reflection      bool
	metricsListen   string
	issuer          string
	audience        string
	shutdownTimeout time.Duration
}

// register declares the flags on fs, with defaults taken from the environment.
func (f *serveFlags) register(fs *flag.FlagSet, metricsDefault string) error {
	reflection, err := envBool("PASSNUM_REFLECTION", true)
	if err != nil {
		return err
	}
	shutdown, err := envDuration("PASSNUM_SHUTDOWN_TIMEOUT", 20*time.Second)
	if err != nil {
		return err
	}
	fs.StringVar(&f.listen, "listen", envOr("PASSNUM_LISTEN", "localhost:50051"), "gRPC listen address (PASSNUM_LISTEN)")
	fs.StringVar(&f.logLevel, "log-level", envOr("PASSNUM_LOG_LEVEL", "info"), "debug, info, warn or error (PASSNUM_LOG_LEVEL)")
	fs.BoolVar(&f.reflection, "reflection", reflection, "serve gRPC reflection, for grpcurl (PASSNUM_REFLECTION)")
	fs.StringVar(&f.metricsListen, "metrics-listen", envOr("PASSNUM_METRICS_LISTEN", metricsDefault),
		"HTTP address for /metrics and /debug/pprof; empty: off. Keep it private (PASSNUM_METRICS_LISTEN)")
	fs.StringVar(&f.issuer, "issuer", envOr("PASSNUM_ISSUER", auth.DefaultIssuer), "required token issuer (PASSNUM_ISSUER)")
	fs.StringVar(&f.audience, "audience", envOr("PASSNUM_AUDIENCE", auth.DefaultAudience), "required token audience (PASSNUM_AUDIENCE)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", shutdown,
		"on SIGTERM/SIGINT, time given to running RPCs before they are cut (PASSNUM_SHUTDOWN_TIMEOUT)")
	return nil
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envBool(name string, def bool) (bool, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
	return b, nil
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want a duration such as 20s", name, v)
	}
	return d, nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func databaseURL() (string, error) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return "", errors.New("DATABASE_URL is not set (for a local server with its own PostgreSQL, run `passnumd dev` or `make run`)")
	}
	return url, nil
}

func runMigrate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	logLevel := fs.String("log-level", envOr("PASSNUM_LOG_LEVEL", "info"), "debug, info, warn or error (PASSNUM_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate takes no arguments, got %q", fs.Args())
	}
	logger, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	url, err := databaseURL()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := dbmigrate.Migrate(ctx, url); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	logger.Info("migrations applied", "duration_ms", time.Since(start).Milliseconds())
	return nil
}
