package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/ledger"
)

// errNotVerified is returned, after the report is printed, when a check failed: the command
// then exits with status 1.
var errNotVerified = errors.New("the ledger does not verify: see the failed checks above")

// runVerify verifies the ledger in DATABASE_URL, one programme or all of them, and prints
// every check with its figures.
func runVerify(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	programme := fs.String("programme", "", "programme id (default: every programme)")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL connection string (DATABASE_URL)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dbURL == "" {
		return errors.New("verify: set DATABASE_URL or --database-url")
	}
	id := uuid.Nil
	if *programme != "" {
		var err error
		if id, err = uuid.Parse(*programme); err != nil {
			return fmt.Errorf("verify: --programme: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	pool, err := dbmigrate.OpenApp(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer pool.Close()
	rep, err := ledger.New(pool, nil).Verify(ctx, id)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	scope := "tous les programmes"
	if id != uuid.Nil {
		scope = "programme " + id.String()
	}
	return printReport(stdout, fmt.Sprintf("Vérification du registre (%s), instantané du %s",
		scope, rep.VerifiedAt.Format("02/01/2006 15:04:05 MST")), rep)
}

// runVerifyExport verifies an exported journal offline.
func runVerifyExport(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("verify-export", flag.ContinueOnError)
	format := fs.String("format", "", "jsonl or csv (default: csv for a .csv file, else jsonl)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: passnum verify-export [--format jsonl|csv] FILE  (FILE - reads standard input)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("verify-export: want exactly one FILE")
	}
	name := fs.Arg(0)
	if *format == "" {
		*format = string(ledger.FormatJSONL)
		if strings.HasSuffix(strings.ToLower(name), ".csv") {
			*format = string(ledger.FormatCSV)
		}
	}
	f, err := ledger.ParseFormat(*format)
	if err != nil {
		return fmt.Errorf("verify-export: --format: %w", err)
	}
	in := os.Stdin
	if name != "-" {
		if in, err = os.Open(name); err != nil {
			return fmt.Errorf("verify-export: %w", err)
		}
		defer in.Close()
	}
	rep, err := ledger.VerifyExport(bufio.NewReader(in), f)
	if err != nil {
		return fmt.Errorf("verify-export %s: %w", name, err)
	}
	return printReport(stdout, fmt.Sprintf("Vérification de l'export %s (%s)", name, f), rep)
}

// printReport prints a verification report, one check per paragraph with its figures, and
// returns errNotVerified if a check failed.
func printReport(w io.Writer, title string, rep *ledger.Report) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s\n%d transactions, %d écritures\n\n", title, rep.Transactions, rep.Postings)
	failed := 0
	for _, c := range rep.Checks {
		mark := "OK   "
		if !c.OK {
			mark = "ÉCHEC"
			failed++
		}
		fmt.Fprintf(bw, "%s  %s\n       %s\n", mark, c.Name, c.Detail)
		keys := slices.Sorted(maps.Keys(c.Figures))
		figures := make([]string, len(keys))
		for i, k := range keys {
			figures[i] = fmt.Sprintf("%s=%d", k, c.Figures[k])
		}
		fmt.Fprintf(bw, "       %s\n", strings.Join(figures, " "))
	}
	if rep.OK {
		fmt.Fprintf(bw, "\nRegistre vérifié : les %d contrôles sont satisfaits.\n", len(rep.Checks))
	} else {
		fmt.Fprintf(bw, "\nRegistre NON vérifié : %d contrôle(s) sur %d en échec.\n", failed, len(rep.Checks))
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if !rep.OK {
		return errNotVerified
	}
	return nil
}
