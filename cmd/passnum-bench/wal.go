package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// walSample is the server's WAL activity so far (pg_stat_wal, the whole server).
type walSample struct {
	records, fpi, bytes int64
	syncs               int64   // WAL flushes to disk (fdatasync)
	syncMS              float64 // time in them, counted when track_wal_io_timing is on
}

// sampleWAL reads pg_stat_wal; differences of two readings give a window's WAL.
func sampleWAL(ctx context.Context, url string) (walSample, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return walSample{}, err
	}
	defer conn.Close(ctx)
	var s walSample
	err = conn.QueryRow(ctx, `SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_sync, wal_sync_time FROM pg_stat_wal`).
		Scan(&s.records, &s.fpi, &s.bytes, &s.syncs, &s.syncMS)
	if err != nil {
		return s, fmt.Errorf("read pg_stat_wal: %w", err)
	}
	return s, nil
}

// walPerCall describes the WAL written between a and b per call (or per transaction), and
// the disk flushes that made it durable.
func walPerCall(a, b walSample, calls int) string {
	if calls <= 0 {
		return "no calls"
	}
	n := float64(calls)
	s := fmt.Sprintf("WAL per call: %.0f bytes, %.1f records, %.2f full-page images",
		float64(b.bytes-a.bytes)/n, float64(b.records-a.records)/n, float64(b.fpi-a.fpi)/n)
	if syncs := b.syncs - a.syncs; syncs > 0 {
		s += fmt.Sprintf("; %d flushes, %.2f ms each on average", syncs, (b.syncMS-a.syncMS)/float64(syncs))
	}
	return s
}

// walWarmSegments is how many 16 MB WAL segments warmWAL creates: as much as min_wal_size
// then keeps recycled (benchSettings).
const walWarmSegments = 64

// warmWAL creates the server's WAL segments before anything is measured. A new cluster has
// one segment: until checkpoints recycle old ones, each next segment is created, zero-filled
// (16 MB) and fsynced by the backend whose commit needs it, inside that commit. strace of a
// redemption executor's backend during a latency run showed two such segments in 3 seconds
// (3,500 redemptions/s write about 12 MB of WAL a second), each holding the programme's
// chain head for as long as the disk takes. A server in service recycles its segments at
// every checkpoint (min_wal_size keeps at least that much), so creating them is a cold
// start that the figures, pgbench's included, should not measure.
func warmWAL(ctx context.Context, conn *pgx.Conn) error {
	steps := []string{
		"CREATE TABLE passnum_bench_wal_warmup (x int)",
		// Each switch ends a segment; the next insert writes into a new one.
		fmt.Sprintf(`DO $$ BEGIN
			FOR i IN 1..%d LOOP
				INSERT INTO passnum_bench_wal_warmup VALUES (i);
				PERFORM pg_switch_wal();
			END LOOP;
		END $$`, walWarmSegments),
		"DROP TABLE passnum_bench_wal_warmup",
		// Recycles the segments just written as the next ones.
		"CHECKPOINT",
	}
	for _, q := range steps {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("warm up WAL: %w", err)
		}
	}
	return nil
}
