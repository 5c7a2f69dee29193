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
