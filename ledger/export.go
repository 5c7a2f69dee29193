package ledger

// The journal export: everything an auditor needs to verify a programme's books offline with
// VerifyExport (or `passnum verify-export`), with no access to the database.
//
// An export is taken in one snapshot and holds, in this order:
//
//  1. one "chain" record per programme: the chain head (last_seq, last_hash) that the
//     transactions must end at, so that a journal cut short is caught;
//  2. one "account" record per account, in (programme_id, id) order: id, programme, kind,
//     owner, normal_side and the stored balance, so that balances can be checked against the
//     postings;
//  3. the transactions in (programme_id, seq) order, with everything ChainHash covers, the
//     identity (kind, owner) of each posted account for readability, and prev_hash/hash.
//
// Bytes (request_hash, prev_hash, hash, last_hash) are lowercase hex; times are RFC 3339 in
// UTC with microseconds (the database's precision, which the hash covers); metadata is the
// exact JSON text stored, as a string, because the hash covers those bytes. Account identities
// are not covered by the chain: VerifyExport only checks that the identities repeated on
// postings agree with the account records.
//
// # JSON lines (FormatJSONL)
//
// One JSON object per line, told apart by "type":
//
//	{"type":"chain","programme":UUID,"last_seq":N,"last_hash":HEX}
//	{"type":"account","id":N,"programme":UUID,"kind":KIND,"owner":UUID,"normal_side":±1,"balance":CENTS}
//	{"type":"transaction","programme":UUID,"seq":N,"id":UUID,"kind":KIND,"effective_at":TIME,
//	 "recorded_at":TIME,"org":UUID,"idempotency_key":TEXT,"request_hash":HEX,"reverses":UUID|"",
//	 "metadata":JSON-TEXT,"prev_hash":HEX,"hash":HEX,
//	 "postings":[{"account":N,"kind":KIND,"owner":UUID,"amount":CENTS},...]}
//
// # CSV (FormatCSV)
//
// RFC 4180, one header line, then one row per record with a record_type column; a transaction
// takes one "posting" row per posting, its transaction columns repeated on each. Columns:
//
//	record_type      chain | account | posting | transaction (a transaction without postings,
//	                 which only a damaged database can hold)
//	programme_id     all records
//	seq              posting: the transaction's seq; chain: last_seq
//	tx_id            posting: the transaction's id
//	tx_kind          posting: funding, issuance, ... (TxKind)
//	effective_at     posting
//	recorded_at      posting
//	org_id           posting: organisation on whose behalf it was written
//	idempotency_key  posting, empty when none
//	request_hash     posting, hex, empty when none
//	reverses         posting: id of the reversed transaction, empty when none
//	metadata         posting: exact JSON text
//	prev_hash        posting, hex
//	hash             posting: the transaction's hash; chain: last_hash
//	account_id       account, posting
//	account_kind     account, posting
//	account_owner    account, posting (nil UUID for programme-wide accounts)
//	normal_side      account: 1 debit-normal, -1 credit-normal
//	balance          account: stored balance in its normal direction, cents
//	amount           posting: cents, positive debit, negative credit

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/fault"
)

// Format is an export format.
type Format string

const (
	// FormatJSONL is one JSON object per line.
	FormatJSONL Format = "jsonl"
	// FormatCSV is one CSV row per record, postings with their transaction repeated.
	FormatCSV Format = "csv"
)

// ParseFormat accepts "jsonl" or "csv".
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatJSONL, FormatCSV:
		return f, nil
	}
	return "", fmt.Errorf("unknown export format %q (want jsonl or csv)", s)
}

// csvColumns is the CSV header line; the package comment documents each column.
var csvColumns = []string{
	"record_type", "programme_id", "seq", "tx_id", "tx_kind", "effective_at", "recorded_at", "org_id",
	"idempotency_key", "request_hash", "reverses", "metadata", "prev_hash", "hash",
	"account_id", "account_kind", "account_owner", "normal_side", "balance", "amount",
}

// Indexes into csvColumns.
const (
	colType = iota
	colProgramme
	colSeq
	colTxID
	colTxKind
	colEffectiveAt
	colRecordedAt
	colOrg
	colKey
	colRequestHash
	colReverses
	colMetadata
	colPrevHash
	colHash
	colAccountID
	colAccountKind
	colAccountOwner
	colNormalSide
	colBalance
	colAmount
	numColumns
)

// Record types of an export.
const (
	recChain       = "chain"
	recAccount     = "account"
	recTransaction = "transaction"
	recPosting     = "posting"
)

// exportTime is the text form of times in an export: RFC 3339, UTC, microseconds.
const exportTime = "2006-01-02T15:04:05.999999Z07:00"

// ChainHead is a programme's chain head: the seq and hash of its last transaction.
type ChainHead struct {
	Programme uuid.UUID
	LastSeq   int64
	LastHash  []byte
}

// Account is an account's identity and stored balance.
type Account struct {
	ID         int64
	Programme  uuid.UUID
	Kind       AccountKind
	Owner      uuid.UUID
	NormalSide int64
	Balance    int64
}

// JournalEntry is one transaction of the journal with the identity of each posted account:
// Accounts[i] is the account of Postings[i].
type JournalEntry struct {
	Record
	Accounts []AccountRef
}

// scope is the programme filter of a query: NULL (every programme) or one programme id.
func scope(programme uuid.UUID) any {
	if programme == uuid.Nil {
		return nil
	}
	return programme
}

// errProgrammeNotFound is the fault for verifying or exporting a programme that has no journal.
func errProgrammeNotFound(programme uuid.UUID) error {
	return fault.New(fault.NotFound, "PROGRAMME_NOT_FOUND",
		"Ce programme n'existe pas : aucun journal n'est tenu pour lui.", "programme_id", programme.String())
}

// chainHeads reads the chain head of the programme, or of every programme, in programme
// order. A programme given but absent is a NotFound fault.
func chainHeads(ctx context.Context, q Querier, programme uuid.UUID) ([]ChainHead, error) {
	rows, err := q.Query(ctx, `
		SELECT programme_id, last_seq, last_hash FROM ledger_chains
		 WHERE $1::uuid IS NULL OR programme_id = $1
		 ORDER BY programme_id`, scope(programme))
	if err != nil {
		return nil, fmt.Errorf("read chain heads: %w", err)
	}
	heads, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ChainHead, error) {
		var h ChainHead
		err := row.Scan(&h.Programme, &h.LastSeq, &h.LastHash)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("read chain heads: %w", err)
	}
	if programme != uuid.Nil && len(heads) == 0 {
		return nil, errProgrammeNotFound(programme)
	}
	return heads, nil
}

// eachAccount calls fn for every account of the programme (or of all), in (programme, id)
// order, one row at a time.
func eachAccount(ctx context.Context, q Querier, programme uuid.UUID, fn func(*Account) error) error {
	rows, err := q.Query(ctx, `
		SELECT id, programme_id, kind, owner_id, normal_side, balance FROM accounts
		 WHERE $1::uuid IS NULL OR programme_id = $1
		 ORDER BY programme_id, id`, scope(programme))
	if err != nil {
		return fmt.Errorf("read accounts: %w", err)
	}
	defer rows.Close()
	var (
		a    Account
		kind string
		side int16
	)
	for rows.Next() {
		if err := rows.Scan(&a.ID, &a.Programme, &kind, &a.Owner, &side, &a.Balance); err != nil {
			return fmt.Errorf("read accounts: %w", err)
		}
		a.Kind, a.NormalSide = AccountKind(kind), int64(side)
		if err := fn(&a); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read accounts: %w", err)
	}
	return nil
}

// eachTransaction calls fn for every transaction of the programme (or of all), in
// (programme_id, seq) order, with its postings in account id order. Rows are read one at a
// time as the server sends them; the entry passed to fn is reused for the next row.
func eachTransaction(ctx context.Context, q Querier, programme uuid.UUID, fn func(*JournalEntry) error) error {
	rows, err := q.Query(ctx, `
		SELECT t.programme_id, t.seq, t.id, t.kind, t.effective_at, t.recorded_at, t.org_id,
		       coalesce(t.idempotency_key, ''), t.request_hash, t.reverses, t.metadata::text,
		       t.prev_hash, t.hash, p.account_ids, p.amounts, p.kinds, p.owners
		  FROM transactions t
		 CROSS JOIN LATERAL (
		       SELECT coalesce(array_agg(p.account_id ORDER BY p.account_id), '{}') AS account_ids,
		              coalesce(array_agg(p.amount ORDER BY p.account_id), '{}') AS amounts,
		              coalesce(array_agg(a.kind ORDER BY p.account_id), '{}') AS kinds,
		              coalesce(array_agg(a.owner_id ORDER BY p.account_id), '{}') AS owners
		         FROM postings p JOIN accounts a ON a.id = p.account_id
		        WHERE p.programme_id = t.programme_id AND p.seq = t.seq) p
		 WHERE $1::uuid IS NULL OR t.programme_id = $1
		 ORDER BY t.programme_id, t.seq`, scope(programme))
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	defer rows.Close()
	var (
		e        JournalEntry
		kind     string
		reverses *uuid.UUID
		meta     string
		accounts []int64
		amounts  []int64
		kinds    []string
		owners   []uuid.UUID
	)
	for rows.Next() {
		if err := rows.Scan(&e.Programme, &e.Seq, &e.ID, &kind, &e.EffectiveAt, &e.RecordedAt, &e.Org,
			&e.IdempotencyKey, &e.RequestHash, &reverses, &meta, &e.PrevHash, &e.Hash,
			&accounts, &amounts, &kinds, &owners); err != nil {
			return fmt.Errorf("read journal: %w", err)
		}
		e.Kind, e.Metadata = TxKind(kind), []byte(meta)
		e.EffectiveAt, e.RecordedAt = e.EffectiveAt.UTC(), e.RecordedAt.UTC()
		e.Reverses = uuid.Nil
		if reverses != nil {
			e.Reverses = *reverses
		}
		e.Postings, e.Accounts = e.Postings[:0], e.Accounts[:0]
		for i := range accounts {
			e.Postings = append(e.Postings, RecordPosting{AccountID: accounts[i], Amount: amounts[i]})
			e.Accounts = append(e.Accounts, AccountRef{Programme: e.Programme, Kind: AccountKind(kinds[i]), Owner: owners[i]})
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	return nil
}

// Export writes the journal of a programme (uuid.Nil: of every programme) to w in the given
// format, one row at a time: chain heads, accounts, then transactions. q should be a
// snapshot (RunInSnapshot, or Ledger.Export) so that the three parts agree.
func Export(ctx context.Context, q Querier, w io.Writer, programme uuid.UUID, format Format) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var jw journalWriter
	switch format {
	case FormatJSONL:
		jw = newJSONLWriter(bw)
	case FormatCSV:
		jw = newCSVWriter(bw)
	default:
		return fmt.Errorf("export: unknown format %q", format)
	}
	heads, err := chainHeads(ctx, q, programme)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := jw.begin(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	for i := range heads {
		if err := jw.chain(&heads[i]); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := eachAccount(ctx, q, programme, jw.account); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := eachTransaction(ctx, q, programme, jw.transaction); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := jw.flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// Export writes the journal of a programme (uuid.Nil: everything) to w, in one read-only
// REPEATABLE READ snapshot. It is not retried: part of the output may already be written.
func (l *Ledger) Export(ctx context.Context, w io.Writer, programme uuid.UUID, format Format) error {
	return pgx.BeginTxFunc(ctx, l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error { return Export(ctx, tx, w, programme, format) })
}

type journalWriter interface {
	begin() error
	chain(*ChainHead) error
	account(*Account) error
	transaction(*JournalEntry) error
	flush() error
}

// JSON lines.

type jsonChain struct {
	Type      string    `json:"type"`
	Programme uuid.UUID `json:"programme"`
	LastSeq   int64     `json:"last_seq"`
	LastHash  string    `json:"last_hash"`
}

type jsonAccount struct {
	Type       string    `json:"type"`
	ID         int64     `json:"id"`
	Programme  uuid.UUID `json:"programme"`
	Kind       string    `json:"kind"`
	Owner      uuid.UUID `json:"owner"`
	NormalSide int64     `json:"normal_side"`
	Balance    int64     `json:"balance"`
}

type jsonTransaction struct {
	Type           string        `json:"type"`
	Programme      uuid.UUID     `json:"programme"`
	Seq            int64         `json:"seq"`
	ID             uuid.UUID     `json:"id"`
	Kind           string        `json:"kind"`
	EffectiveAt    string        `json:"effective_at"`
	RecordedAt     string        `json:"recorded_at"`
	Org            uuid.UUID     `json:"org"`
	IdempotencyKey string        `json:"idempotency_key"`
	RequestHash    string        `json:"request_hash"`
	Reverses       string        `json:"reverses"`
	Metadata       string        `json:"metadata"`
	PrevHash       string        `json:"prev_hash"`
	Hash           string        `json:"hash"`
	Postings       []jsonPosting `json:"postings"`
}

type jsonPosting struct {
	Account int64     `json:"account"`
	Kind    string    `json:"kind"`
	Owner   uuid.UUID `json:"owner"`
	Amount  int64     `json:"amount"`
}

type jsonlWriter struct {
	enc *json.Encoder
	tx  jsonTransaction // reused
}

func newJSONLWriter(w io.Writer) *jsonlWriter {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &jsonlWriter{enc: enc}
}

func (j *jsonlWriter) begin() error { return nil }

func (j *jsonlWriter) chain(h *ChainHead) error {
	return j.enc.Encode(jsonChain{Type: recChain, Programme: h.Programme, LastSeq: h.LastSeq, LastHash: hex.EncodeToString(h.LastHash)})
}

func (j *jsonlWriter) account(a *Account) error {
	return j.enc.Encode(jsonAccount{Type: recAccount, ID: a.ID, Programme: a.Programme, Kind: string(a.Kind),
		Owner: a.Owner, NormalSide: a.NormalSide, Balance: a.Balance})
}

func (j *jsonlWriter) transaction(e *JournalEntry) error {
	t := &j.tx
	*t = jsonTransaction{
		Type: recTransaction, Programme: e.Programme, Seq: e.Seq, ID: e.ID, Kind: string(e.Kind),
		EffectiveAt: e.EffectiveAt.Format(exportTime), RecordedAt: e.RecordedAt.Format(exportTime),
		Org: e.Org, IdempotencyKey: e.IdempotencyKey, RequestHash: hex.EncodeToString(e.RequestHash),
		Reverses: uuidText(e.Reverses), Metadata: string(e.Metadata),
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
		Postings: t.Postings[:0],
	}
	for i, p := range e.Postings {
		t.Postings = append(t.Postings, jsonPosting{Account: p.AccountID, Kind: string(e.Accounts[i].Kind),
			Owner: e.Accounts[i].Owner, Amount: p.Amount})
	}
	return j.enc.Encode(t)
}

func (j *jsonlWriter) flush() error { return nil }

// uuidText is the export text of an optional UUID: empty for uuid.Nil.
func uuidText(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

// CSV.

type csvWriter struct {
	w   *csv.Writer
	row []string // reused
}

func newCSVWriter(w io.Writer) *csvWriter {
	return &csvWriter{w: csv.NewWriter(w), row: make([]string, numColumns)}
}

func (c *csvWriter) begin() error { return c.w.Write(csvColumns) }

// start clears the reused row and sets the record type and programme.
func (c *csvWriter) start(recordType string, programme uuid.UUID) []string {
	clear(c.row)
	c.row[colType], c.row[colProgramme] = recordType, programme.String()
	return c.row
}

func (c *csvWriter) chain(h *ChainHead) error {
	r := c.start(recChain, h.Programme)
	r[colSeq] = strconv.FormatInt(h.LastSeq, 10)
	r[colHash] = hex.EncodeToString(h.LastHash)
	return c.w.Write(r)
}

func (c *csvWriter) account(a *Account) error {
	r := c.start(recAccount, a.Programme)
	r[colAccountID] = strconv.FormatInt(a.ID, 10)
	r[colAccountKind] = string(a.Kind)
	r[colAccountOwner] = a.Owner.String()
	r[colNormalSide] = strconv.FormatInt(a.NormalSide, 10)
	r[colBalance] = strconv.FormatInt(a.Balance, 10)
	return c.w.Write(r)
}

func (c *csvWriter) transaction(e *JournalEntry) error {
	recType := recPosting
	if len(e.Postings) == 0 {
		recType = recTransaction
	}
	r := c.start(recType, e.Programme)
	r[colSeq] = strconv.FormatInt(e.Seq, 10)
	r[colTxID] = e.ID.String()
	r[colTxKind] = string(e.Kind)
	r[colEffectiveAt] = e.EffectiveAt.Format(exportTime)
	r[colRecordedAt] = e.RecordedAt.Format(exportTime)
	r[colOrg] = e.Org.String()
	r[colKey] = e.IdempotencyKey
	r[colRequestHash] = hex.EncodeToString(e.RequestHash)
	r[colReverses] = uuidText(e.Reverses)
	r[colMetadata] = string(e.Metadata)
	r[colPrevHash] = hex.EncodeToString(e.PrevHash)
	r[colHash] = hex.EncodeToString(e.Hash)
	if len(e.Postings) == 0 {
		return c.w.Write(r)
	}
	for i, p := range e.Postings {
		r[colAccountID] = strconv.FormatInt(p.AccountID, 10)
		r[colAccountKind] = string(e.Accounts[i].Kind)
		r[colAccountOwner] = e.Accounts[i].Owner.String()
		r[colAmount] = strconv.FormatInt(p.Amount, 10)
		if err := c.w.Write(r); err != nil {
			return err
		}
	}
	return nil
}

func (c *csvWriter) flush() error {
	c.w.Flush()
	return c.w.Error()
}
