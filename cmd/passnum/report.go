package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/internal/reports"
	"github.com/passnum/passnum/ledger"
)

// runReport prints a spend report over the whole database (the operator's scope), read from
// DATABASE_URL in one read-only snapshot: as an aligned table, or as CSV for a spreadsheet.
func runReport(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	var req reports.Request
	fs.StringVar(&req.Programme, "programme", "", "programme id")
	fs.StringVar(&req.Funder, "funder", "", "funder id: figures become that funder's part")
	fs.StringVar(&req.Territory, "territory", "", "département code (07, 2A, 974…)")
	fs.StringVar(&req.Distributor, "distributor", "", "distributor id")
	fs.StringVar(&req.Site, "site", "", "site id")
	fs.StringVar(&req.From, "from", "", "first month, YYYY-MM")
	fs.StringVar(&req.To, "to", "", "last month, YYYY-MM")
	groupBy := fs.String("group-by", "", "comma-separated: programme, funder, territory, distributor, site, month")
	asCSV := fs.Bool("csv", false, "write CSV (UTF-8 with BOM, \";\", decimal comma) instead of a table")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL connection string (DATABASE_URL)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dbURL == "" {
		return errors.New("report: set DATABASE_URL or --database-url")
	}
	for _, name := range strings.Split(*groupBy, ",") {
		if strings.TrimSpace(name) == "" {
			continue
		}
		d, err := reports.ParseDimension(name)
		if err != nil {
			return fmt.Errorf("report: --group-by: %w", err)
		}
		req.GroupBy = append(req.GroupBy, d)
	}
	q, err := req.Parse()
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	pool, err := dbmigrate.OpenApp(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer pool.Close()
	svc := reports.New(ledger.New(pool, nil))
	rep, names, err := svc.SpendNamed(ctx, reports.Everything, q)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if *asCSV {
		return reports.WriteCSV(stdout, rep, names)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, record := range reports.Records(rep, names) {
		fmt.Fprintln(tw, strings.Join(record, "\t")+"\t")
	}
	return tw.Flush()
}
