package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// activitySample counts the server's WAL so far (pg_stat_wal, the whole server), its
// checkpoints, whose writes share the disk with the WAL's flushes, and autovacuum's runs over
// the connected database's tables, which share the cores and the disk while they last.
type activitySample struct {
	records, fpi, bytes int64
	syncs               int64   // WAL flushes to disk (fdatasync)
	syncMS              float64 // time in them, counted when track_wal_io_timing is on
	checkpointsTimed    int64   // checkpoints started by checkpoint_timeout
	checkpointsAsked    int64   // started because max_wal_size was near, or by CHECKPOINT
	checkpointBuffers   int64   // buffers written by checkpoints
	autovacuums         int64   // tables vacuumed by autovacuum
	autoanalyzes        int64   // tables analysed by autovacuum
}

// Checkpoint counters moved from pg_stat_bgwriter to pg_stat_checkpointer in PostgreSQL 17.
const (
	checkpointStats   = `SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint FROM pg_stat_bgwriter`
	checkpointStats17 = `SELECT num_timed, num_requested, buffers_written FROM pg_stat_checkpointer`
)

// sampleActivity reads the counters; differences of two readings describe a window.
func sampleActivity(ctx context.Context, url string) (activitySample, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return activitySample{}, err
	}
	defer conn.Close(ctx)
	var s activitySample
	err = conn.QueryRow(ctx, `SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_sync, wal_sync_time FROM pg_stat_wal`).
		Scan(&s.records, &s.fpi, &s.bytes, &s.syncs, &s.syncMS)
	if err != nil {
		return s, fmt.Errorf("read pg_stat_wal: %w", err)
	}
	var v17 bool
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int >= 170000").Scan(&v17); err != nil {
		return s, fmt.Errorf("read server version: %w", err)
	}
	q := checkpointStats
	if v17 {
		q = checkpointStats17
	}
	if err := conn.QueryRow(ctx, q).Scan(&s.checkpointsTimed, &s.checkpointsAsked, &s.checkpointBuffers); err != nil {
		return s, fmt.Errorf("read checkpoint statistics: %w", err)
	}
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(autovacuum_count), 0)::bigint, coalesce(sum(autoanalyze_count), 0)::bigint
		FROM pg_stat_user_tables`).Scan(&s.autovacuums, &s.autoanalyzes)
	if err != nil {
		return s, fmt.Errorf("read pg_stat_user_tables: %w", err)
	}
	return s, nil
}

// activityPerCall describes the WAL written between a and b per call (or per transaction),
// the disk flushes that made it durable, and the checkpoints and autovacuum runs meanwhile.
func activityPerCall(a, b activitySample, calls int) string {
	if calls <= 0 {
		return "no calls"
	}
	n := float64(calls)
	s := fmt.Sprintf("WAL per call: %.0f bytes, %.1f records, %.2f full-page images",
		float64(b.bytes-a.bytes)/n, float64(b.records-a.records)/n, float64(b.fpi-a.fpi)/n)
	if syncs := b.syncs - a.syncs; syncs > 0 {
		s += fmt.Sprintf("; %d flushes, %.2f ms each on average", syncs, (b.syncMS-a.syncMS)/float64(syncs))
	}
	s += fmt.Sprintf("; checkpoints started: %d by time, %d asked for, %d buffers written by checkpoints",
		b.checkpointsTimed-a.checkpointsTimed, b.checkpointsAsked-a.checkpointsAsked, b.checkpointBuffers-a.checkpointBuffers)
	s += fmt.Sprintf("; autovacuum: %d tables vacuumed, %d analysed", b.autovacuums-a.autovacuums, b.autoanalyzes-a.autoanalyzes)
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
