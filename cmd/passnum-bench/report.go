package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/pgcluster"
)

// Report scenario.
const (
	maxReportP95ms    = 50
	reportDatabase    = "reports"
	fullScale         = 10_000_000
	datagenMeasureOut = `p50 ([0-9.]+) ms, p95 ([0-9.]+) ms, p99 ([0-9.]+) ms`
)

var datagenLine = regexp.MustCompile(datagenMeasureOut)

// reportScenario times SpendReport with cmd/passnum-datagen's own measurement: on the data
// of `make bench-data` when its directory holds a cluster, else on data it generates at
// o.reportRedemptions in the benchmark's cluster.
func (b *bench) reportScenario(ctx context.Context) error {
	dataDir := b.o.reportData
	if !filepath.IsAbs(dataDir) {
		dataDir = filepath.Join(b.root, dataDir)
	}
	var (
		url  string
		args []string
		what string
	)
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err == nil {
		c, err := pgcluster.Start(ctx, pgcluster.Options{DataDir: dataDir, Persistent: true})
		if err != nil {
			return fmt.Errorf("start the cluster of %s: %w", dataDir, err)
		}
		defer func() {
			if err := c.Stop(); err != nil {
				b.log.Warn("stop the report cluster", "error", err)
			}
		}()
		url = c.URL("postgres")
		args = []string{"-measure-only"}
		what = "data of make bench-data in " + dataDir
	} else {
		if err := b.createDatabase(ctx, reportDatabase); err != nil {
			return err
		}
		url = b.cluster.URL(reportDatabase)
		args = []string{"-redemptions", strconv.FormatInt(b.o.reportRedemptions, 10), "-verify=false"}
		what = fmt.Sprintf("data generated for this run (no %s: run make bench-data for the 10 M-redemption set)", dataDir)
		b.log.Info("report: generating data", "redemptions", b.o.reportRedemptions)
	}
	began := time.Now()
	cmd := exec.CommandContext(ctx, b.o.datagen, append(args, "-database-url", url)...)
	cmd.Dir = b.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("passnum-datagen %v: %w\n%s", args, err, out)
	}
	m := datagenLine.FindStringSubmatch(string(out))
	if m == nil {
		return fmt.Errorf("passnum-datagen printed no latency line:\n%s", out)
	}
	p50, _ := strconv.ParseFloat(m[1], 64)
	p95, _ := strconv.ParseFloat(m[2], 64)
	p99, _ := strconv.ParseFloat(m[3], 64)
	redemptions, err := countRedemptions(ctx, url)
	if err != nil {
		return err
	}
	b.log.Info("report: measured", "p95_ms", p95, "redemptions", redemptions, "took", time.Since(began).Round(time.Second))
	note := fmt.Sprintf("passnum-datagen's SpendReport timing over %d redemptions (%s): p50 %.1f ms, p99 %.1f ms",
		redemptions, what, p50, p99)
	if redemptions < fullScale*9/10 {
		note += fmt.Sprintf("; SMALLER than the 10 M of the target (%.1f M)", float64(redemptions)/1e6)
	}
	b.res.limit(figReport, p95, "ms", maxReportP95ms, note)
	return nil
}

func countRedemptions(ctx context.Context, url string) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, `SELECT count(*) FROM redemptions`).Scan(&n)
	if err != nil {
		return 0, errors.Join(errors.New("count redemptions"), err)
	}
	return n, nil
}
