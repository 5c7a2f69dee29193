package vcode

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/capitalone/fpe/ff1"
)

// # Keyed codes
//
// A code is not drawn at random and stored when its book is issued: it is the FF1 encryption
// (NIST SP 800-38G, format-preserving, AES under a secret key) of where the voucher sits —
// its programme's prefix, its book's number and its position — as a 12-digit base-32 number,
// which is exactly a code's 60 data bits. Because FF1 is a permutation of those 60 bits:
//
//   - two vouchers never share a code, with no index to check it against (issuing a million
//     vouchers writes their 100,000 books, not a million rows);
//   - a code gives back its voucher's place (Slot), so looking it up needs no index either;
//   - without the key, a code says nothing about the codes of other vouchers, even of the
//     same book: they look as random as drawn codes.
//
// The key is therefore as sensitive as the database: whoever has it can write the codes of
// books not yet handed out. It lives in a file outside the repository (passnumd's
// -voucher-keys), and each book order records the id of the key its codes were made with, so
// that a new key can be put first in the file for new orders while older books keep theirs.

// Bit layout of a slot inside the 60 data bits.
const (
	PrefixBits   = 20
	BookBits     = 34
	PositionBits = 6

	// MaxPrefix is the largest programme prefix: about a million programmes.
	MaxPrefix = 1<<PrefixBits - 1
	// MaxBook is the largest book number within a programme.
	MaxBook = 1<<BookBits - 1
	// MaxPosition is the largest position of a voucher in its book.
	MaxPosition = 50
)

// Slot is where a voucher sits: its programme's prefix, its book's number in the programme
// and its position in the book (from 1).
type Slot struct {
	Prefix   uint32
	Book     int64
	Position int
}

func (s Slot) valid() bool {
	return s.Prefix >= 1 && s.Prefix <= MaxPrefix && s.Book >= 1 && s.Book <= MaxBook &&
		s.Position >= 1 && s.Position <= MaxPosition
}

func (s Slot) bits() uint64 {
	return uint64(s.Prefix)<<(BookBits+PositionBits) | uint64(s.Book)<<PositionBits | uint64(s.Position)
}

func slotOf(v uint64) Slot {
	return Slot{
		Prefix:   uint32(v >> (BookBits + PositionBits)),
		Book:     int64(v >> PositionBits & (1<<BookBits - 1)),
		Position: int(v & (1<<PositionBits - 1)),
	}
}

// Key makes and reads the codes of the books ordered under it. It is safe for concurrent use.
type Key struct {
	id string
	// ff1.Cipher reuses one CBC encrypter whose IV it sets on every call: one call at a time.
	mu     sync.Mutex
	cipher ff1.Cipher
}

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

// NewKey returns the key for secret, which must be KeySize bytes. Its id is a fingerprint of
// the secret, so an order can never be read with another key that happens to bear its name.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("voucher key: %d bytes, want %d", len(secret), KeySize)
	}
	c, err := ff1.NewCipher(1<<5, 0, secret, nil)
	if err != nil {
		return nil, fmt.Errorf("voucher key: %w", err)
	}
	sum := sha256.Sum256(append([]byte("passnum voucher code key\x00"), secret...))
	return &Key{id: "k" + hex.EncodeToString(sum[:8]), cipher: c}, nil
}

// ID names the key (a fingerprint of its secret); book orders record it.
func (k *Key) ID() string { return k.id }

// Code returns the code of the voucher at s.
func (k *Key) Code(s Slot) (Code, error) {
	if !s.valid() {
		return 0, fmt.Errorf("voucher slot %d/%d/%d out of range", s.Prefix, s.Book, s.Position)
	}
	v, err := k.apply(s.bits(), true)
	if err != nil {
		return 0, fmt.Errorf("code of slot %d/%d/%d: %w", s.Prefix, s.Book, s.Position, err)
	}
	return Code(v), nil
}

// Slot returns where the voucher of code c would sit if c was made with this key. ok is false
// when it could not have been (most codes typed at random); when ok, the caller still has to
// find that book.
func (k *Key) Slot(c Code) (s Slot, ok bool, err error) {
	if !c.Valid() {
		return Slot{}, false, nil
	}
	v, err := k.apply(uint64(c), false)
	if err != nil {
		return Slot{}, false, fmt.Errorf("slot of code %s: %w", c, err)
	}
	s = slotOf(v)
	return s, s.valid(), nil
}

// apply encrypts or decrypts the 60-bit value v as 12 base-32 digits.
func (k *Key) apply(v uint64, encrypt bool) (uint64, error) {
	var buf [dataLen]byte
	digits := strconv.AppendUint(buf[:0], v, 1<<5)
	in := strings.Repeat("0", dataLen-len(digits)) + string(digits)
	k.mu.Lock()
	var (
		out string
		err error
	)
	if encrypt {
		out, err = k.cipher.Encrypt(in)
	} else {
		out, err = k.cipher.Decrypt(in)
	}
	k.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(out, 1<<5, Bits)
}

// Keyring holds the keys of every book order; the first is used for new orders.
type Keyring struct {
	keys []*Key
}

// NewKeyring returns a keyring whose current key is the first of keys.
func NewKeyring(keys ...*Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("voucher keyring: no key")
	}
	seen := make(map[string]bool)
	for _, k := range keys {
		if seen[k.id] {
			return nil, fmt.Errorf("voucher keyring: key %s twice", k.id)
		}
		seen[k.id] = true
	}
	return &Keyring{keys: keys}, nil
}

// RandomKeyring returns a keyring of one new random key, for tests and throwaway databases:
// codes made with it can no longer be read once it is gone.
func RandomKeyring() *Keyring {
	secret := make([]byte, KeySize)
	rand.Read(secret) // never fails (crypto/rand, Go 1.24+)
	k, err := NewKey(secret)
	if err != nil {
		panic(err) // the size is right: cannot happen
	}
	return &Keyring{keys: []*Key{k}}
}

// Current is the key of new orders.
func (r *Keyring) Current() *Key { return r.keys[0] }

// Key returns the key named id.
func (r *Keyring) Key(id string) (*Key, bool) {
	for _, k := range r.keys {
		if k.id == id {
			return k, true
		}
	}
	return nil, false
}

// Keys lists the keys, the current one first.
func (r *Keyring) Keys() []*Key { return r.keys }

// ParseKeyring reads a key file: one secret a line, as unpadded base64url; blank lines and
// lines starting with # are ignored. The first key is the current one.
func ParseKeyring(data []byte) (*Keyring, error) {
	var keys []*Key
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		secret, err := base64.RawURLEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("voucher keys line %d: %w", n, err)
		}
		k, err := NewKey(secret)
		if err != nil {
			return nil, fmt.Errorf("voucher keys line %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("voucher keys: %w", err)
	}
	return NewKeyring(keys...)
}

// LoadKeyring reads the key file at path.
func LoadKeyring(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("voucher keys: %w", err)
	}
	r, err := ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// GenerateKeyFile writes a key file of one new random key at path (mode 0600), unless a file
// is already there. created says whether it wrote one.
func GenerateKeyFile(path string) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("voucher keys: %w", err)
	}
	secret := make([]byte, KeySize)
	rand.Read(secret) // never fails (crypto/rand, Go 1.24+)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("voucher keys: %w", err)
	}
	data := "# passnum voucher code keys, one a line: the first makes the codes of new book orders.\n" +
		"# Keep secret, and keep every key that made codes still in use.\n" +
		base64.RawURLEncoding.EncodeToString(secret) + "\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("voucher keys: %w", err)
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return false, fmt.Errorf("voucher keys: %w", err)
	}
	return true, f.Close()
}
