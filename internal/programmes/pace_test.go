package programmes

import (
	"testing"
	"time"
)

func TestPaceCutAt(t *testing.T) {
	ms := func(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	at := func(n float64) time.Time { return t0.Add(ms(n)) }
	noLimit := at(1000)
	tests := []struct {
		name  string
		last  *batchClock // nil: no batch yet
		read  time.Duration
		write time.Duration
		now   time.Time
		limit time.Time
		want  time.Time
	}{
		{name: "no batch yet: at once", now: at(5), limit: noLimit, want: at(5)},
		{name: "last batch ended: at once", last: &batchClock{cut: at(0), writeStart: at(1), ended: true},
			read: ms(1), write: ms(3), now: at(2), limit: noLimit, want: at(2)},
		{name: "last batch writing: its read ends as that write does",
			last: &batchClock{cut: at(0), writeStart: at(1)}, read: ms(1), write: ms(3), now: at(2), limit: noLimit,
			want: at(3)}, // 1 + 3 − 1
		{name: "last batch writing for longer than its average: at once",
			last: &batchClock{cut: at(0), writeStart: at(1)}, read: ms(1), write: ms(3), now: at(4), limit: noLimit,
			want: at(3)},
		{name: "last batch reading: after its read and write",
			last: &batchClock{cut: at(0)}, read: ms(1), write: ms(3), now: at(0.5), limit: noLimit,
			want: at(3)}, // write from 0 + 1, ends at 4, minus a read
		{name: "last batch read longer than average and waits for the lock: from now",
			last: &batchClock{cut: at(0)}, read: ms(1), write: ms(3), now: at(2), limit: noLimit,
			want: at(4)}, // write from 2 at the earliest, ends at 5, minus a read
		{name: "reads slower than writes: at once",
			last: &batchClock{cut: at(0), writeStart: at(1)}, read: ms(4), write: ms(2), now: at(1.5), limit: noLimit,
			want: at(-1)},
		{name: "bounded by the oldest request's limit",
			last: &batchClock{cut: at(0), writeStart: at(1)}, read: ms(1), write: ms(30), now: at(2), limit: at(10),
			want: at(10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &pace{read: tt.read, write: tt.write, last: tt.last}
			if got := p.cutAt(tt.now, tt.limit); !got.Equal(tt.want) {
				t.Errorf("cutAt = %v after t0, want %v", got.Sub(t0), tt.want.Sub(t0))
			}
		})
	}
}

// TestPaceClock: a batch's round trips feed the moving averages, and a batch cut replaces
// the last one.
func TestPaceClock(t *testing.T) {
	var p pace
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	b := p.cutNow(t0)
	b.readDone(2 * time.Millisecond)
	b.writing(t0.Add(3 * time.Millisecond))
	b.written(t0.Add(7 * time.Millisecond))
	if p.read != 2*time.Millisecond || p.write != 4*time.Millisecond {
		t.Fatalf("first averages: read %v write %v, want the first round trips", p.read, p.write)
	}
	if got := p.cutAt(t0.Add(5*time.Millisecond), t0.Add(time.Second)); !got.Equal(t0.Add(5 * time.Millisecond)) {
		t.Fatalf("while the batch writes: cut at %v, want %v", got.Sub(t0), 5*time.Millisecond) // 3 + 4 − 2
	}
	b.end()
	if got := p.cutAt(t0.Add(6*time.Millisecond), t0.Add(time.Second)); !got.Equal(t0.Add(6 * time.Millisecond)) {
		t.Fatalf("after the batch ended: cut at %v, want now", got.Sub(t0))
	}
	c := p.cutNow(t0.Add(8 * time.Millisecond))
	c.readDone(18 * time.Millisecond) // one slow read moves the average by a sixteenth
	if want := 2*time.Millisecond + time.Millisecond*16/paceWeight; p.read != want {
		t.Fatalf("read average %v, want %v", p.read, want)
	}
	if p.last != c {
		t.Fatal("the batch cut last is not the last one")
	}
	var nilClock *batchClock // a batch run again item by item has none
	nilClock.readDone(time.Second)
	nilClock.writing(t0)
	nilClock.written(t0)
	nilClock.end()
}
