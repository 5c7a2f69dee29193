// Command passnum is the operator's command-line tool.
//
//	passnum token --role site --org <uuid> [--sub name] [--ttl 8h] [--key var/keys/signing.pem]
//	passnum keygen [--dir var/keys]
//	passnum verify [--programme ID]
//	passnum verify-export [--format jsonl|csv] FILE
//
// Each subcommand lives in its own file and is listed once in commands below.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout io.Writer) error
}

var commands = []command{
	{"token", "mint an access token signed with a local key", runToken},
	{"keygen", "create an Ed25519 signing key and its JWKS key set", runKeygen},
	{"report", "print a spend report from DATABASE_URL (--csv for a spreadsheet)", runReport},
	{"verify", "verify the ledger in DATABASE_URL (--programme ID for one programme)", runVerify},
	{"verify-export", "verify an exported journal offline: verify-export [--format jsonl|csv] FILE", runVerifyExport},
}

func main() {
	err := dispatch(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "passnum:", err)
		os.Exit(1)
	}
}

func dispatch(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		usage()
		return errors.New("missing command")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage()
		return flag.ErrHelp
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout)
		}
	}
	usage()
	return fmt.Errorf("unknown command %q", args[0])
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: passnum <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun passnum <command> -h for its flags.")
}

// parseFlags parses a subcommand's flags and refuses stray arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	return nil
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
