package ledger

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// VerifyExport checks an export (see export.go) offline, with no database: every
// transaction's postings sum to zero and so does the whole journal, every exported account's
// balance is normal_side × the sum of its postings, and each programme's hash chain is intact
// from genesis to its exported chain head. It reads the export once, keeping only one running
// total per account and one chain state per programme.
//
// A malformed export (bad syntax, unknown record, missing field) is an error naming the line;
// a well-formed export whose figures do not hold gives a report with failed checks.
func VerifyExport(r io.Reader, format Format) (*Report, error) {
	v := newExportVerifier()
	var err error
	switch format {
	case FormatJSONL:
		err = readJSONL(r, v)
	case FormatCSV:
		err = readCSV(r, v)
	default:
		err = fmt.Errorf("unknown format %q", format)
	}
	if err != nil {
		return nil, fmt.Errorf("verify export: %w", err)
	}
	return v.report(), nil
}

// chainState is where a programme's chain stands while the export is read.
type chainState struct {
	seq  int64
	hash []byte
}

type exportVerifier struct {
	heads    []ChainHead
	headSeen map[uuid.UUID]bool
	accounts map[int64]Account
	sums     map[int64]int64      // account id → sum of its postings
	posted   map[int64]AccountRef // account id → identity given on its postings
	chains   map[uuid.UUID]*chainState

	txs, postings, sum, unbalanced, empty       int64
	unknownAccounts, identityMismatch, badSides int64
	duplicateAccounts, duplicateHeads           int64
	badHash, badLink, seqGaps, inconsistentRows int64
	exSum, exBalance, exChain                   examples
}

func newExportVerifier() *exportVerifier {
	return &exportVerifier{
		headSeen: make(map[uuid.UUID]bool),
		accounts: make(map[int64]Account),
		sums:     make(map[int64]int64),
		posted:   make(map[int64]AccountRef),
		chains:   make(map[uuid.UUID]*chainState),
	}
}

func (v *exportVerifier) chain(h *ChainHead) error {
	if v.headSeen[h.Programme] {
		v.duplicateHeads++
		v.exChain.add("programme %s : tête de chaîne en double", h.Programme)
		return nil
	}
	v.headSeen[h.Programme] = true
	v.heads = append(v.heads, ChainHead{Programme: h.Programme, LastSeq: h.LastSeq, LastHash: bytes.Clone(h.LastHash)})
	return nil
}

func (v *exportVerifier) account(a *Account) error {
	if _, dup := v.accounts[a.ID]; dup {
		v.duplicateAccounts++
		v.exBalance.add("compte %d en double", a.ID)
		return nil
	}
	if !a.Kind.valid() || a.NormalSide != a.Kind.NormalSide() {
		v.badSides++
		v.exBalance.add("compte %d : nature %q et sens normal %d incompatibles", a.ID, a.Kind, a.NormalSide)
	}
	v.accounts[a.ID] = *a
	return nil
}

func (v *exportVerifier) transaction(e *JournalEntry) error {
	v.txs++
	var total int64
	for i, p := range e.Postings {
		v.postings++
		total += p.Amount
		v.sums[p.AccountID] += p.Amount
		if _, seen := v.posted[p.AccountID]; !seen {
			v.posted[p.AccountID] = e.Accounts[i]
		} else if v.posted[p.AccountID] != e.Accounts[i] {
			v.identityMismatch++
			v.exBalance.add("compte %d : identité différente selon les écritures (%s, %s)",
				p.AccountID, v.posted[p.AccountID], e.Accounts[i])
		}
	}
	v.sum += total
	switch {
	case len(e.Postings) == 0:
		v.empty++
		v.exSum.add("transaction %s/%d : aucune écriture", e.Programme, e.Seq)
	case total != 0 || len(e.Postings) == 1:
		v.unbalanced++
		v.exSum.add("transaction %s/%d : %d écriture(s), somme %d", e.Programme, e.Seq, len(e.Postings), total)
	}

	st := v.chains[e.Programme]
	if st == nil {
		st = &chainState{hash: GenesisHash}
		v.chains[e.Programme] = st
	}
	if e.Seq != st.seq+1 {
		v.seqGaps++
		v.exChain.add("programme %s : transaction n° %d après n° %d", e.Programme, e.Seq, st.seq)
	}
	if !bytes.Equal(e.PrevHash, st.hash) {
		v.badLink++
		v.exChain.add("programme %s, transaction n° %d : prev_hash %s ≠ empreinte précédente %s",
			e.Programme, e.Seq, short(e.PrevHash), short(st.hash))
	}
	if want := ChainHash(e.PrevHash, &e.Record); !bytes.Equal(want, e.Hash) {
		v.badHash++
		v.exChain.add("programme %s, transaction n° %d : empreinte exportée %s, recalculée %s",
			e.Programme, e.Seq, short(e.Hash), short(want))
	}
	st.seq, st.hash = e.Seq, bytes.Clone(e.Hash)
	return nil
}

// report decides the three checks once the whole export has been read.
func (v *exportVerifier) report() *Report {
	r := &Report{Transactions: v.txs, Postings: v.postings, VerifiedAt: time.Now().UTC()}
	if len(v.heads) == 1 {
		r.Programme = v.heads[0].Programme
	}

	c := Check{Name: CheckPostingsSumZero, Figures: map[string]int64{
		"transactions": v.txs, "postings": v.postings, "sum_cents": v.sum,
		"unbalanced_transactions": v.unbalanced, "transactions_without_postings": v.empty,
	}}
	c.OK = v.sum == 0 && v.unbalanced == 0 && v.empty == 0
	if c.OK {
		c.Detail = fmt.Sprintf("%d écritures en %d transactions, toutes équilibrées ; somme totale nulle.", v.postings, v.txs)
	} else {
		c.Detail = fmt.Sprintf("somme totale des écritures : %d centimes ; %d transaction(s) déséquilibrée(s), %d sans écriture : %s",
			v.sum, v.unbalanced, v.empty, v.exSum.String())
	}
	r.add(c)

	ids := make([]int64, 0, len(v.accounts))
	for id := range v.accounts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var mismatched int64
	for _, id := range ids {
		a := v.accounts[id]
		if derived := a.NormalSide * v.sums[id]; a.Balance != derived {
			mismatched++
			v.exBalance.add("compte %d (%s/%s/%s) : solde exporté %d, somme des écritures %d",
				id, a.Programme, a.Kind, a.Owner, a.Balance, derived)
		}
		if ref, ok := v.posted[id]; ok && ref != (AccountRef{Programme: a.Programme, Kind: a.Kind, Owner: a.Owner}) {
			v.identityMismatch++
			v.exBalance.add("compte %d : exporté comme %s/%s/%s, écritures sur %s", id, a.Programme, a.Kind, a.Owner, ref)
		}
	}
	postedIDs := make([]int64, 0, len(v.posted))
	for id := range v.posted {
		if _, ok := v.accounts[id]; !ok {
			postedIDs = append(postedIDs, id)
		}
	}
	slices.Sort(postedIDs)
	for _, id := range postedIDs {
		v.unknownAccounts++
		v.exBalance.add("compte %d : des écritures mais absent de la liste des comptes", id)
	}
	c = Check{Name: CheckBalancesMatchPostings, Figures: map[string]int64{
		"accounts": int64(len(v.accounts)), "mismatched_accounts": mismatched,
		"postings_on_unlisted_accounts": v.unknownAccounts, "account_identity_mismatches": v.identityMismatch,
		"accounts_with_wrong_side": v.badSides, "duplicate_accounts": v.duplicateAccounts,
	}}
	c.OK = mismatched == 0 && v.unknownAccounts == 0 && v.identityMismatch == 0 && v.badSides == 0 && v.duplicateAccounts == 0
	if c.OK {
		c.Detail = fmt.Sprintf("les %d soldes exportés sont égaux à la somme de leurs écritures.", len(v.accounts))
	} else {
		c.Detail = "soldes et écritures ne concordent pas : " + v.exBalance.String()
	}
	r.add(c)

	var badHeads int64
	for _, h := range v.heads {
		end := chainState{hash: GenesisHash}
		if st := v.chains[h.Programme]; st != nil {
			end = *st
		}
		if h.LastSeq != end.seq || !bytes.Equal(h.LastHash, end.hash) {
			badHeads++
			v.exChain.add("programme %s : tête de chaîne n° %d %s, dernière transaction n° %d %s",
				h.Programme, h.LastSeq, short(h.LastHash), end.seq, short(end.hash))
		}
	}
	progs := make([]uuid.UUID, 0, len(v.chains))
	for p := range v.chains {
		if !v.headSeen[p] {
			progs = append(progs, p)
		}
	}
	slices.SortFunc(progs, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	for _, p := range progs {
		badHeads++
		v.exChain.add("programme %s : transactions sans tête de chaîne", p)
	}
	badHeads += v.duplicateHeads
	c = Check{Name: CheckHashChain, Figures: map[string]int64{
		"chains": int64(len(v.heads)), "transactions": v.txs, "bad_hashes": v.badHash,
		"broken_links": v.badLink, "seq_gaps": v.seqGaps, "bad_heads": badHeads,
		"inconsistent_rows": v.inconsistentRows,
	}}
	c.OK = v.badHash == 0 && v.badLink == 0 && v.seqGaps == 0 && badHeads == 0 && v.inconsistentRows == 0
	if c.OK {
		c.Detail = fmt.Sprintf("%d chaîne(s) intacte(s) : %d transactions recalculées depuis l'origine.", len(v.heads), v.txs)
	} else {
		c.Detail = "chaîne d'empreintes rompue : " + v.exChain.String()
	}
	r.add(c)
	return r
}

// Reading JSON lines.

func readJSONL(r io.Reader, v *exportVerifier) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var e JournalEntry // reused
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			if err := readJSONRecord(b, &e, v); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}

func readJSONRecord(b []byte, e *JournalEntry, v *exportVerifier) error {
	var kind struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &kind); err != nil {
		return err
	}
	switch kind.Type {
	case recChain:
		var c jsonChain
		if err := strictUnmarshal(b, &c); err != nil {
			return err
		}
		h := ChainHead{Programme: c.Programme, LastSeq: c.LastSeq}
		var err error
		if h.LastHash, err = hashField("last_hash", c.LastHash); err != nil {
			return err
		}
		return v.chain(&h)
	case recAccount:
		var a jsonAccount
		if err := strictUnmarshal(b, &a); err != nil {
			return err
		}
		return v.account(&Account{ID: a.ID, Programme: a.Programme, Kind: AccountKind(a.Kind), Owner: a.Owner,
			NormalSide: a.NormalSide, Balance: a.Balance})
	case recTransaction:
		var t jsonTransaction
		if err := strictUnmarshal(b, &t); err != nil {
			return err
		}
		if err := t.entry(e); err != nil {
			return err
		}
		return v.transaction(e)
	}
	return fmt.Errorf("unknown record type %q", kind.Type)
}

// strictUnmarshal refuses unknown fields: a renamed field is a damaged export, not a zero.
func strictUnmarshal(b []byte, out any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(out)
}

// entry fills e from an exported transaction.
func (t *jsonTransaction) entry(e *JournalEntry) error {
	*e = JournalEntry{Record: Record{
		Programme: t.Programme, Seq: t.Seq, ID: t.ID, Kind: TxKind(t.Kind), Org: t.Org,
		IdempotencyKey: t.IdempotencyKey, Metadata: []byte(t.Metadata),
		Postings: e.Postings[:0]}, Accounts: e.Accounts[:0]}
	var err error
	if e.EffectiveAt, err = timeField("effective_at", t.EffectiveAt); err != nil {
		return err
	}
	if e.RecordedAt, err = timeField("recorded_at", t.RecordedAt); err != nil {
		return err
	}
	if e.RequestHash, err = optionalHexField("request_hash", t.RequestHash); err != nil {
		return err
	}
	if e.Reverses, err = optionalUUIDField("reverses", t.Reverses); err != nil {
		return err
	}
	if e.PrevHash, err = hashField("prev_hash", t.PrevHash); err != nil {
		return err
	}
	if e.Hash, err = hashField("hash", t.Hash); err != nil {
		return err
	}
	for _, p := range t.Postings {
		e.Postings = append(e.Postings, RecordPosting{AccountID: p.Account, Amount: p.Amount})
		e.Accounts = append(e.Accounts, AccountRef{Programme: t.Programme, Kind: AccountKind(p.Kind), Owner: p.Owner})
	}
	return nil
}

func timeField(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", name, err)
	}
	return t.UTC(), nil
}

func optionalHexField(name, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

func hashField(name, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) != len(GenesisHash) {
		return nil, fmt.Errorf("%s: %d bytes, want %d", name, len(b), len(GenesisHash))
	}
	return b, nil
}

func optionalUUIDField(name, s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s: %w", name, err)
	}
	return id, nil
}

func uuidField(name, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s: %w", name, err)
	}
	return id, nil
}

func intField(name, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// Reading CSV.

// txColumns are the columns a transaction repeats on each of its posting rows.
var txColumns = []int{colProgramme, colSeq, colTxID, colTxKind, colEffectiveAt, colRecordedAt, colOrg,
	colKey, colRequestHash, colReverses, colMetadata, colPrevHash, colHash}

func readCSV(r io.Reader, v *exportVerifier) error {
	cr := csv.NewReader(bufio.NewReaderSize(r, 64<<10))
	cr.FieldsPerRecord = numColumns
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if !slices.Equal(header, csvColumns) {
		return fmt.Errorf("header: columns %q, want %q", header, csvColumns)
	}
	var (
		pending  bool
		first    []string // transaction columns of the pending transaction's first row
		firstRow int
		e        JournalEntry
	)
	flush := func() error {
		if !pending {
			return nil
		}
		pending = false
		return v.transaction(&e)
	}
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return flush()
		}
		if err != nil {
			return err
		}
		line, _ := cr.FieldPos(0)
		switch row[colType] {
		case recPosting, recTransaction:
			if pending && sameTransaction(first, row) {
				if row[colType] == recTransaction {
					return fmt.Errorf("line %d: transaction row inside a transaction started at line %d", line, firstRow)
				}
				if !sameColumns(first, row, txColumns) {
					v.inconsistentRows++
					v.exChain.add("ligne %d : colonnes de la transaction différentes de la ligne %d", line, firstRow)
				}
				if err := appendCSVPosting(&e, row); err != nil {
					return fmt.Errorf("line %d: %w", line, err)
				}
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			if err := csvTransaction(&e, row); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			first, firstRow, pending = row, line, true
		case recChain, recAccount:
			if err := flush(); err != nil {
				return err
			}
			if err := csvOther(row, v); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
		default:
			return fmt.Errorf("line %d: unknown record type %q", line, row[colType])
		}
	}
}

// sameTransaction reports whether two rows belong to one transaction (programme, seq, id).
func sameTransaction(a, b []string) bool {
	return sameColumns(a, b, []int{colProgramme, colSeq, colTxID})
}

func sameColumns(a, b []string, cols []int) bool {
	for _, c := range cols {
		if a[c] != b[c] {
			return false
		}
	}
	return true
}

func csvOther(row []string, v *exportVerifier) error {
	prog, err := uuidField("programme_id", row[colProgramme])
	if err != nil {
		return err
	}
	if row[colType] == recChain {
		h := ChainHead{Programme: prog}
		if h.LastSeq, err = intField("seq", row[colSeq]); err != nil {
			return err
		}
		if h.LastHash, err = hashField("hash", row[colHash]); err != nil {
			return err
		}
		return v.chain(&h)
	}
	a := Account{Programme: prog, Kind: AccountKind(row[colAccountKind])}
	if a.ID, err = intField("account_id", row[colAccountID]); err != nil {
		return err
	}
	if a.Owner, err = uuidField("account_owner", row[colAccountOwner]); err != nil {
		return err
	}
	if a.NormalSide, err = intField("normal_side", row[colNormalSide]); err != nil {
		return err
	}
	if a.Balance, err = intField("balance", row[colBalance]); err != nil {
		return err
	}
	return v.account(&a)
}

// csvTransaction starts e from the first row of a transaction.
func csvTransaction(e *JournalEntry, row []string) error {
	*e = JournalEntry{Record: Record{
		Kind: TxKind(row[colTxKind]), IdempotencyKey: row[colKey], Metadata: []byte(row[colMetadata]),
		Postings: e.Postings[:0]}, Accounts: e.Accounts[:0]}
	var err error
	if e.Programme, err = uuidField("programme_id", row[colProgramme]); err != nil {
		return err
	}
	if e.Seq, err = intField("seq", row[colSeq]); err != nil {
		return err
	}
	if e.ID, err = uuidField("tx_id", row[colTxID]); err != nil {
		return err
	}
	if e.EffectiveAt, err = timeField("effective_at", row[colEffectiveAt]); err != nil {
		return err
	}
	if e.RecordedAt, err = timeField("recorded_at", row[colRecordedAt]); err != nil {
		return err
	}
	if e.Org, err = uuidField("org_id", row[colOrg]); err != nil {
		return err
	}
	if e.RequestHash, err = optionalHexField("request_hash", row[colRequestHash]); err != nil {
		return err
	}
	if e.Reverses, err = optionalUUIDField("reverses", row[colReverses]); err != nil {
		return err
	}
	if e.PrevHash, err = hashField("prev_hash", row[colPrevHash]); err != nil {
		return err
	}
	if e.Hash, err = hashField("hash", row[colHash]); err != nil {
		return err
	}
	if row[colType] == recTransaction {
		return nil
	}
	return appendCSVPosting(e, row)
}

func appendCSVPosting(e *JournalEntry, row []string) error {
	id, err := intField("account_id", row[colAccountID])
	if err != nil {
		return err
	}
	amount, err := intField("amount", row[colAmount])
	if err != nil {
		return err
	}
	owner, err := uuidField("account_owner", row[colAccountOwner])
	if err != nil {
		return err
	}
	e.Postings = append(e.Postings, RecordPosting{AccountID: id, Amount: amount})
	e.Accounts = append(e.Accounts, AccountRef{Programme: e.Programme, Kind: AccountKind(row[colAccountKind]), Owner: owner})
	return nil
}
