package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"time"

	"github.com/google/uuid"
)

// GenesisHash is the prev_hash of the first transaction of every programme's chain.
var GenesisHash = make([]byte, sha256.Size)

// Record is a transaction as it is stored and exported: everything the hash covers.
type Record struct {
	Programme      uuid.UUID
	Seq            int64
	ID             uuid.UUID
	Kind           TxKind
	EffectiveAt    time.Time
	RecordedAt     time.Time
	Org            uuid.UUID
	IdempotencyKey string
	RequestHash    []byte
	Reverses       uuid.UUID // uuid.Nil when not a reversal
	Metadata       []byte    // the exact JSON text stored
	Postings       []RecordPosting
	PrevHash       []byte
	Hash           []byte
}

// RecordPosting is one stored posting: positive amounts are debits, negative are credits.
type RecordPosting struct {
	AccountID int64
	Amount    int64
}

const encodingVersion = 1

// ChainHash computes SHA-256(prev_hash || canonical encoding of the transaction and its
// postings). The encoding is length-prefixed binary, times in Unix microseconds (the
// database's precision), postings sorted by account id. verify-export uses this same
// function, so an auditor's check and the server's agree by construction.
func ChainHash(prev []byte, r *Record) []byte {
	b := make([]byte, 0, 256+16*len(r.Postings)+len(r.Metadata))
	b = append(b, encodingVersion)
	b = append(b, r.Programme[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = append(b, r.ID[:]...)
	b = appendBytes(b, []byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, uint64(r.EffectiveAt.UnixMicro()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.RecordedAt.UnixMicro()))
	b = append(b, r.Org[:]...)
	b = appendBytes(b, []byte(r.IdempotencyKey))
	b = appendBytes(b, r.RequestHash)
	b = append(b, r.Reverses[:]...)
	b = appendBytes(b, r.Metadata)
	ps := slices.Clone(r.Postings)
	slices.SortFunc(ps, func(x, y RecordPosting) int {
		switch {
		case x.AccountID < y.AccountID:
			return -1
		case x.AccountID > y.AccountID:
			return 1
		}
		return 0
	})
	b = binary.BigEndian.AppendUint32(b, uint32(len(ps)))
	for _, p := range ps {
		b = binary.BigEndian.AppendUint64(b, uint64(p.AccountID))
		b = binary.BigEndian.AppendUint64(b, uint64(p.Amount))
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(b)
	return h.Sum(nil)
}

func appendBytes(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}
