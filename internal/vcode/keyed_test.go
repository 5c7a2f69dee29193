package vcode

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKey(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The codes of a key must never change: they are printed on paper. These were computed once
// with the key above; a change of library or layout that alters them fails here.
func TestKeyCodesAreStable(t *testing.T) {
	k := testKey(t)
	for _, tc := range []struct {
		slot Slot
		want string
	}{
		{Slot{1, 1, 1}, "PN-FB9B-MM3Q-4EY5-S"},
		{Slot{1, 1, 2}, "PN-XC3N-PFHW-F64M-D"},
		{Slot{MaxPrefix, MaxBook, MaxPosition}, "PN-QAFV-2M05-CG8K-0"},
	} {
		c, err := k.Code(tc.slot)
		if err != nil {
			t.Fatal(err)
		}
		if c.String() != tc.want {
			t.Errorf("Code(%v) = %s, want %s", tc.slot, c, tc.want)
		}
		back, ok, err := k.Slot(c)
		if err != nil || !ok || back != tc.slot {
			t.Errorf("Slot(%s) = %v, %v, %v; want %v", c, back, ok, err, tc.slot)
		}
	}
}

// Every slot of a few books has its own code, and each code gives its slot back.
func TestKeyCodesAreDistinctAndReversible(t *testing.T) {
	k := testKey(t)
	seen := make(map[Code]Slot)
	for _, prefix := range []uint32{1, 2, 77, MaxPrefix} {
		for _, book := range []int64{1, 2, 3, 1000, MaxBook} {
			for pos := 1; pos <= MaxPosition; pos++ {
				s := Slot{prefix, book, pos}
				c, err := k.Code(s)
				if err != nil {
					t.Fatal(err)
				}
				if !c.Valid() {
					t.Fatalf("Code(%v) = %d: not a valid code", s, c)
				}
				if other, dup := seen[c]; dup {
					t.Fatalf("slots %v and %v share code %s", other, s, c)
				}
				seen[c] = s
				if back, ok, err := k.Slot(c); err != nil || !ok || back != s {
					t.Fatalf("Slot(Code(%v)) = %v, %v, %v", s, back, ok, err)
				}
			}
		}
	}
}

func TestKeyRefusesSlotsOutOfRange(t *testing.T) {
	k := testKey(t)
	for _, s := range []Slot{
		{0, 1, 1}, {MaxPrefix + 1, 1, 1}, {1, 0, 1}, {1, MaxBook + 1, 1}, {1, 1, 0}, {1, 1, MaxPosition + 1}, {1, -1, 1},
	} {
		if c, err := k.Code(s); err == nil {
			t.Errorf("Code(%v) = %s, want an error", s, c)
		}
	}
}

// Another key gives other codes, and most codes typed at random are not a slot of the key.
func TestKeysAreIndependent(t *testing.T) {
	a := testKey(t)
	b, err := NewKey(bytes.Repeat([]byte{8}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for book := int64(1); book <= 200; book++ {
		s := Slot{1, book, 1}
		ca, _ := a.Code(s)
		cb, _ := b.Code(s)
		if ca == cb {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d of 200 slots have the same code under two keys", same)
	}
	random, err := Generate(2000)
	if err != nil {
		t.Fatal(err)
	}
	plausible := 0
	for _, c := range random {
		if _, ok, err := a.Slot(c); err != nil {
			t.Fatal(err)
		} else if ok {
			plausible++
		}
	}
	// A slot is plausible when its prefix and book are not 0 and its position is 1..50: about
	// 50/64 of random values. Whether the book exists is the database's question.
	if plausible < 1400 || plausible > 1720 {
		t.Errorf("%d of 2000 random codes decode to a plausible slot, want about 1560", plausible)
	}
	if _, ok, err := a.Slot(-1); ok || err != nil {
		t.Errorf("Slot(-1) = %v, %v", ok, err)
	}
}

func TestParseKeyring(t *testing.T) {
	one, two := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize)
	enc := base64.RawURLEncoding.EncodeToString
	k1, _ := NewKey(one)
	k2, _ := NewKey(two)
	for _, tc := range []struct {
		name, file string
		ids        []string
		wantErr    string
	}{
		{"one key", enc(one) + "\n", []string{k1.ID()}, ""},
		{"comments and two keys", "# keys\n\n" + enc(two) + "\n  " + enc(one) + "  \n", []string{k2.ID(), k1.ID()}, ""},
		{"empty", "# nothing\n", nil, "no key"},
		{"bad base64", "!!!\n", nil, "line 1"},
		{"padded base64", base64.URLEncoding.EncodeToString(one) + "\n", nil, "line 1"},
		{"short secret", enc([]byte("short")) + "\n", nil, "want 32"},
		{"same key twice", enc(one) + "\n" + enc(one) + "\n", nil, "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseKeyring([]byte(tc.file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, k := range r.Keys() {
				ids = append(ids, k.ID())
			}
			if strings.Join(ids, ",") != strings.Join(tc.ids, ",") || r.Current().ID() != tc.ids[0] {
				t.Errorf("ids = %v, current %s; want %v", ids, r.Current().ID(), tc.ids)
			}
			if _, ok := r.Key(tc.ids[len(tc.ids)-1]); !ok {
				t.Errorf("Key(%s) not found", tc.ids[len(tc.ids)-1])
			}
		})
	}
	if k1.ID() == k2.ID() || !strings.HasPrefix(k1.ID(), "k") || len(k1.ID()) != 17 {
		t.Errorf("key ids %s and %s", k1.ID(), k2.ID())
	}
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "voucher-codes.keys")
	created, err := GenerateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("GenerateKeyFile = %v, %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	r, err := LoadKeyring(path)
	if err != nil || len(r.Keys()) != 1 {
		t.Fatalf("LoadKeyring = %v, %v", r, err)
	}
	before, _ := os.ReadFile(path)
	if created, err := GenerateKeyFile(path); err != nil || created {
		t.Fatalf("second GenerateKeyFile = %v, %v; want the file kept", created, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("an existing key file was rewritten")
	}
	if RandomKeyring().Current().ID() == RandomKeyring().Current().ID() {
		t.Error("two random keyrings share a key id")
	}
}

func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte(base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1}, KeySize)) + "\n"))
	f.Add([]byte("# x\n\nabc\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseKeyring(data)
		if err != nil {
			return
		}
		if len(r.Keys()) == 0 || r.Current() != r.Keys()[0] {
			t.Fatalf("keyring without a current key")
		}
	})
}

func FuzzKeySlot(f *testing.F) {
	k := testKey(f)
	f.Add(uint32(1), int64(1), 1)
	f.Add(uint32(MaxPrefix), int64(MaxBook), MaxPosition)
	f.Fuzz(func(t *testing.T, prefix uint32, book int64, pos int) {
		s := Slot{prefix, book, pos}
		c, err := k.Code(s)
		if err != nil {
			if s.valid() {
				t.Fatalf("Code(%v): %v", s, err)
			}
			return
		}
		back, ok, err := k.Slot(c)
		if err != nil || !ok || back != s {
			t.Fatalf("Slot(Code(%v)) = %v, %v, %v", s, back, ok, err)
		}
	})
}

func BenchmarkKeyCode(b *testing.B) {
	k := testKey(b)
	for i := 0; b.Loop(); i++ {
		if _, err := k.Code(Slot{1, int64(i%MaxBook + 1), 1}); err != nil {
			b.Fatal(err)
		}
	}
}
