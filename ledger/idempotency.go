package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/fault"
)

// Op describes one idempotent business operation: the caller's organisation and key, the
// operation's name and its request (hashed, so a key reused for another request is caught).
type Op struct {
	Name    string
	Org     uuid.UUID
	Key     string
	Request any
}

// Prior is a response recorded for an idempotency key.
type Prior struct {
	Operation   string
	RequestHash []byte
	Response    []byte
}

// HashRequest is SHA-256 of the operation name and the JSON encoding of the request (Go's
// encoding/json writes struct fields in declaration order and map keys sorted, so the hash
// is stable for a given request).
func HashRequest(op string, req any) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("hash %s request: %w", op, err)
	}
	h := sha256.New()
	h.Write([]byte(op))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil), nil
}

// ErrKeyRequired is the fault for a write without an idempotency key.
var ErrKeyRequired = fault.New(fault.Invalid, "IDEMPOTENCY_KEY_REQUIRED",
	"Chaque opération d'écriture doit porter une clé d'idempotence (idempotency_key).", "field", "idempotency_key")

func validateKey(key string) error {
	if key == "" {
		return ErrKeyRequired
	}
	if len(key) > 200 {
		return fault.New(fault.Invalid, "IDEMPOTENCY_KEY_TOO_LONG",
			"La clé d'idempotence ne doit pas dépasser 200 caractères.", "field", "idempotency_key")
	}
	return nil
}

// Claim serialises the users of one (organisation, key) until tx ends, with a transaction
// advisory lock, then returns the response recorded for it, if any. Without the lock, two
// concurrent first uses of a key could both run the operation and only one record would
// win; with it, the second waits and then replays the first's response.
func Claim(ctx context.Context, tx pgx.Tx, org uuid.UUID, key string) (*Prior, error) {
	if err := validateKey(key); err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, keyLock(org, key))
	var p Prior
	found := true
	b.Queue(`SELECT operation, request_hash, response FROM idempotency_keys WHERE org_id = $1 AND key = $2`,
		org, key).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&p.Operation, &p.RequestHash, &p.Response)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	if !found {
		return nil, nil
	}
	return &p, nil
}

// keyLock is the advisory lock id of an idempotency key (collisions only serialise
// unrelated requests a little; they never mix their records).
func keyLock(org uuid.UUID, key string) int64 {
	h := fnv.New64a()
	h.Write(org[:])
	h.Write([]byte(key))
	return int64(binary.BigEndian.Uint64(h.Sum(nil)))
}

// Remember records the response of an operation under its key, in the operation's own
// transaction. The primary key (org_id, key) is the last guard against a double effect.
func Remember(ctx context.Context, tx pgx.Tx, org uuid.UUID, key, op string, reqHash, response []byte) error {
	if _, err := tx.Exec(ctx, `
		INSERT INTO idempotency_keys (org_id, key, operation, request_hash, response)
		VALUES ($1, $2, $3, $4, $5)`, org, key, op, reqHash, response); err != nil {
		return fmt.Errorf("remember idempotency key: %w", err)
	}
	return nil
}

// Replay checks a prior record against a new request and decodes its response into out.
func (p *Prior) Replay(op string, reqHash []byte, out any) error {
	if p.Operation != op || !bytes.Equal(p.RequestHash, reqHash) {
		return fault.New(fault.Conflict, "IDEMPOTENCY_KEY_REUSED",
			"Cette clé d'idempotence a déjà servi pour une autre demande : utilisez une nouvelle clé.",
			"operation", p.Operation)
	}
	if err := json.Unmarshal(p.Response, out); err != nil {
		return fmt.Errorf("replay %s: %w", op, err)
	}
	return nil
}

// Do runs fn exactly once per (op.Org, op.Key): in one transaction it claims the key, replays
// a recorded response (or refuses a different request under the same key), or runs fn and
// records its JSON-encoded result. Faults returned by fn are not recorded, so a refused
// request changes nothing and may be tried again.
func Do[T any](ctx context.Context, l *Ledger, op Op, fn func(ctx context.Context, tx pgx.Tx, reqHash []byte) (T, error)) (T, error) {
	var out T
	reqHash, err := HashRequest(op.Name, op.Request)
	if err != nil {
		return out, err
	}
	err = l.RunInTx(ctx, op.Name, func(ctx context.Context, tx pgx.Tx) error {
		var zero T
		out = zero
		prior, err := Claim(ctx, tx, op.Org, op.Key)
		if err != nil {
			return err
		}
		if prior != nil {
			return prior.Replay(op.Name, reqHash, &out)
		}
		res, err := fn(ctx, tx, reqHash)
		if err != nil {
			return err
		}
		body, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("%s: encode response: %w", op.Name, err)
		}
		if err := Remember(ctx, tx, op.Org, op.Key, op.Name, reqHash, body); err != nil {
			return err
		}
		out = res
		return nil
	})
	return out, err
}
