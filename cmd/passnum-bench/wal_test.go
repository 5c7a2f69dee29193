package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// The sampler's queries run on the server the tests get (pg_stat_checkpointer from 17 on,
// pg_stat_bgwriter before), and a window's WAL and checkpoints show in the description.
func TestSampleActivity(t *testing.T) {
	ctx := context.Background()
	url := testdb.NewEmpty(t)
	before, err := sampleActivity(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"CREATE TABLE activity (n int)",
		"INSERT INTO activity SELECT generate_series(1, 1000)",
		"CHECKPOINT",
		// A backend reports its WAL counts when idle, at most once a second unless asked.
		"SELECT pg_stat_force_next_flush()",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	after, err := sampleActivity(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	// Other test packages share the server: their activity only adds to these.
	if after.records-before.records < 1000 || after.bytes <= before.bytes {
		t.Errorf("WAL records %d → %d, bytes %d → %d: want at least the 1,000 inserts", before.records, after.records, before.bytes, after.bytes)
	}
	if after.checkpointsAsked <= before.checkpointsAsked {
		t.Errorf("checkpoints asked for %d → %d: want the CHECKPOINT counted", before.checkpointsAsked, after.checkpointsAsked)
	}
	got := activityPerCall(before, after, 1000)
	want := fmt.Sprintf("checkpoints started: %d by time, %d asked for", after.checkpointsTimed-before.checkpointsTimed,
		after.checkpointsAsked-before.checkpointsAsked)
	if !strings.Contains(got, want) || !strings.Contains(got, "autovacuum: ") {
		t.Errorf("activityPerCall = %q, want it to contain %q and the autovacuum runs", got, want)
	}
	if got := activityPerCall(before, after, 0); got != "no calls" {
		t.Errorf("activityPerCall with no calls = %q", got)
	}
}
