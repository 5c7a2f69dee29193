package programmes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
)

// MaxMinutes is the longest help one voucher pays for, in minutes.
const MaxMinutes = 480

// maxKeyBytes is the longest idempotency key (idempotency_keys.key).
const maxKeyBytes = 200

// opRedeem names redemptions in idempotency records.
const opRedeem = "RedeemVoucher"

// RedeemSpec is a redemption request.
type RedeemSpec struct {
	Code        string    // as typed or scanned
	Service     string    // from the site's catalogue
	Minutes     int32     // 1 to 480
	ServiceDate time.Time // zero: today
}

// Redemption is a recorded redemption.
type Redemption struct {
	Code        vcode.Code `json:"code"`
	Round       int32      `json:"round"`
	Programme   uuid.UUID  `json:"programme_id"`
	Site        uuid.UUID  `json:"site_id"`
	Service     string     `json:"service"`
	Minutes     int32      `json:"minutes"`
	ServiceDate time.Time  `json:"service_date"`
	AmountCents int64      `json:"amount_cents"`
	RedeemedAt  time.Time  `json:"redeemed_at"`
	Ledger      ledger.Ref `json:"ledger"`
}

// redeemItem is one queued redemption request and, once done is closed, its outcome.
type redeemItem struct {
	ctx     context.Context
	org     uuid.UUID      // the caller's organisation, a site
	site    *orgs.SiteInfo // read by the batch
	key     string
	hash    []byte
	code    vcode.Code
	service string
	minutes int32
	date    time.Time // service date

	queued time.Time // when submit queued it

	res  *Redemption
	err  error
	done chan struct{}
}

// RedeemVoucher redeems a voucher for a service given at the calling site, exactly once per
// idempotency key whatever the network does: the same key and request return the recorded
// redemption. Concurrent calls are committed together in batches (see the package doc).
func (s *Service) RedeemVoucher(ctx context.Context, p auth.Principal, key string, spec RedeemSpec) (*Redemption, error) {
	if err := requireRole(p, auth.RoleSite); err != nil {
		return nil, err
	}
	if key == "" {
		return nil, ledger.ErrKeyRequired
	}
	if len(key) > maxKeyBytes {
		return nil, fault.New(fault.Invalid, "IDEMPOTENCY_KEY_TOO_LONG",
			"La clé d'idempotence ne doit pas dépasser 200 caractères.", "field", "idempotency_key")
	}
	c, err := vcode.Parse(spec.Code)
	if err != nil {
		return nil, err
	}
	spec.Service = strings.TrimSpace(spec.Service)
	if spec.Service == "" {
		return nil, fault.InvalidField("service", "Indiquez le service rendu, choisi dans le catalogue de votre lieu.")
	}
	if spec.Minutes < 1 || spec.Minutes > MaxMinutes {
		return nil, fault.InvalidField("minutes", "La durée de l'accompagnement est comprise entre 1 et 480 minutes (8 heures).")
	}
	// The hash covers the request as sent: a retry the next day of a request without a date
	// is the same request.
	hash, err := ledger.HashRequest(opRedeem, struct {
		Code        int64  `json:"code"`
		Service     string `json:"service"`
		Minutes     int32  `json:"minutes"`
		ServiceDate string `json:"service_date"`
	}{int64(c), spec.Service, spec.Minutes, civil.FormatDate(spec.ServiceDate)})
	if err != nil {
		return nil, err
	}
	today := s.today()
	date := spec.ServiceDate
	if date.IsZero() {
		date = today
	}
	if date.After(today) {
		return nil, fault.InvalidField("service_date", "La date du service ne peut pas être dans le futur.")
	}
	it := &redeemItem{ctx: ctx, org: p.Org, key: key, hash: hash, code: c, service: spec.Service,
		minutes: spec.Minutes, date: date, done: make(chan struct{})}
	if err := s.redeemer.submit(ctx, it); err != nil {
		return nil, err
	}
	return it.res, it.err
}

// redeemBatch redeems items in tx and sets each item's outcome: a redemption (new or
// replayed) or a fault. Refused items write nothing. It returns an error only when the
// transaction cannot go on; the items' outcomes are then meaningless.
//
// Exactly-once without a round trip per key: the vouchers are locked first (by code, the one
// lock order of every batch, so batches cannot deadlock one another), and the idempotency
// records are read in a later statement, which under READ COMMITTED sees everything committed
// by the transactions those locks waited for. A retry of a request in flight elsewhere names
// the same voucher, so it waits for the first attempt and then replays it. Two different
// requests under one key in two concurrent batches both insert their record: the primary key
// refuses the second, and the ledger's retry (RunPipelined) runs that batch again, which then replays or refuses
// with IDEMPOTENCY_KEY_REUSED. The executor never puts one key twice in a batch.
//
// clock, when not nil, is told the batch's round trips (pace).
func (s *Service) redeemBatch(ctx context.Context, tx *ledger.Pipeline, items []*redeemItem, clock *batchClock) error {
	codes := make([]int64, 0, len(items))
	keyOrgs, keys := make([]pgtype.UUID, len(items)), make([]string, len(items))
	sites := make(map[uuid.UUID]*orgs.SiteInfo)
	var siteIDs []pgtype.UUID
	for i, it := range items {
		it.res, it.err, it.site = nil, nil, nil
		codes = append(codes, int64(it.code))
		keyOrgs[i], keys[i] = pgUUID(it.org), it.key
		if _, ok := sites[it.org]; !ok {
			sites[it.org] = nil
			siteIDs = append(siteIDs, pgUUID(it.org))
		}
	}
	slices.Sort(codes)
	codes = slices.Compact(codes)

	// 1. One round trip, the transaction's BEGIN included: read the sites, lock the vouchers,
	// then read the idempotency records and the last redemption of the vouchers already
	// redeemed. The sites are read once per batch, in its transaction: a suspension committed
	// before the batch started applies.
	vouchers := make(map[vcode.Code]*voucherRow, len(codes))
	priors := make(map[int]*ledger.Prior)
	b := &pgx.Batch{}
	// Generic plans for these four reads (ledger.QueueGenericPlans): replanned on every call
	// whenever batches were small, about 0.3 ms per batch (BenchmarkRedeemAlone).
	ledger.QueueGenericPlans(b, func() {
		b.Queue(siteSelect, siteIDs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				si, err := scanSite(rows)
				if err != nil {
					return err
				}
				sites[si.ID] = si
			}
			return rows.Err()
		})
		b.Queue(voucherSelect+` WHERE v.code = ANY($1) ORDER BY v.code FOR UPDATE OF v`, codes).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				v, err := scanVoucher(rows)
				if err != nil {
					return err
				}
				vouchers[v.code] = v
			}
			return rows.Err()
		})
		b.Queue(`
			SELECT k.i, r.operation, r.request_hash, r.response
			  FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS k(org, key, i)
			 CROSS JOIN LATERAL (SELECT operation, request_hash, response FROM idempotency_keys
			                      WHERE org_id = k.org AND key = k.key) r`, keyOrgs, keys).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var (
					i int
					p ledger.Prior
				)
				if err := rows.Scan(&i, &p.Operation, &p.RequestHash, &p.Response); err != nil {
					return err
				}
				priors[i-1] = &p
			}
			return rows.Err()
		})
		b.Queue(lastRedemptionSelect+` WHERE v.code = ANY($1) AND v.status = 'redeemed'`, codes).Query(func(rows pgx.Rows) error {
			return scanLastRedemptions(rows, vouchers)
		})
	})
	started := time.Now()
	if err := tx.Send(ctx, b); err != nil {
		return fmt.Errorf("lock vouchers: %w", err)
	}
	since(phaseRead, started)
	clock.readDone(time.Since(started))

	// 2. Replays first: a recorded answer stands whatever happened since. An organisation
	// that is no site (a token of the site role for an unknown one) never redeemed anything:
	// orgs.SiteForRedemption says why it is refused.
	var pending []*redeemItem
	for i, it := range items {
		if it.site = sites[it.org]; it.site == nil {
			if _, err := orgs.SiteForRedemption(ctx, tx, it.org); err != nil {
				if _, ok := fault.As(err); !ok {
					return err
				}
				it.err = err
				continue
			}
			return fmt.Errorf("site %s is readable alone but not in its batch", it.org)
		}
		prior := priors[i]
		if prior == nil {
			pending = append(pending, it)
			continue
		}
		var r Redemption
		if err := prior.Replay(opRedeem, it.hash, &r); err != nil {
			if _, ok := fault.As(err); !ok {
				return err
			}
			it.err = err
			continue
		}
		if err := replayRedemption(ctx, tx, &r); err != nil {
			return err
		}
		it.res = &r
	}
	for _, v := range vouchers {
		if v.status == VoucherRedeemed && v.last == nil {
			return fmt.Errorf("voucher %s is redeemed %d times but has no redemption row", v.code, v.rounds)
		}
	}

	// 3. Site checks need no voucher.
	live := pending[:0]
	for _, it := range pending {
		if !it.site.QualifiedOn(it.date) {
			it.err = siteNotQualified(it.site, it.date)
			continue
		}
		svc, ok := it.site.Offers(it.service)
		if !ok {
			it.err = serviceNotInCatalogue(it.site, it.service)
			continue
		}
		it.service = svc
		live = append(live, it)
	}
	pending = live

	// 4. Decide in arrival order. A winner updates the in-memory voucher, so a later item on
	// the same voucher is refused exactly like a loser of a later batch would be.
	now := s.now().UTC().Truncate(time.Microsecond)
	var winners []*redeemItem
	for _, it := range pending {
		v := vouchers[it.code]
		if v == nil {
			// No row: a voucher of a book never handed out, or no voucher at all. Rare, so
			// read one at a time; nothing of such a voucher can change in this transaction.
			bv, err := s.bookVoucher(ctx, tx, it.code)
			if _, ok := fault.As(err); err != nil && !ok {
				return err
			}
			if err != nil {
				it.err = err
				continue
			}
			v = bv
		}
		if err := voucherRefusal(it.site, v, it.date, now); err != nil {
			it.err = err
			continue
		}
		v.status = VoucherRedeemed
		v.rounds++
		v.heldBy, v.heldUntil = nil, nil
		v.last = &lastRedemption{at: now, site: it.site.ID, siteName: it.site.Name}
		it.res = &Redemption{Code: it.code, Round: int32(v.rounds), Programme: v.programme, Site: it.site.ID,
			Service: it.service, Minutes: it.minutes, ServiceDate: it.date, AmountCents: v.faceValue, RedeemedAt: now}
		winners = append(winners, it)
	}
	if len(winners) == 0 {
		return nil
	}
	// 5. Write the winners, in one round trip with the ledger's entries and the commit when
	// the programme's chain head is known to the process (ledger.PendingPost.CommitAtKnownHeads),
	// else in two: everything but the ledger, then, last, the chain head's lock; then the
	// ledger's entries and the commit. Either way the chain head and Outstanding account,
	// which serialise the programme's writers, are held for the ledger's statements and the
	// commit only (and, in the second form, one round trip of the client).
	// The ledger transactions' ids are chosen here; redemptions reference them through a
	// foreign key checked at commit (migrations/005_programmes.sql). The idempotency records
	// name the redemption only (recordedRedemption); replays read it back (replayRedemption).
	n := len(winners)
	var (
		wCodes             = make([]int64, n)
		wRounds            = make([]int16, n)
		wProgs, wSites     = make([]pgtype.UUID, n), make([]pgtype.UUID, n)
		wServices, wKeys   = make([]string, n), make([]string, n)
		wOps               = make([]string, n)
		wMinutes           = make([]int32, n)
		wDates, wAt        = make([]time.Time, n), make([]time.Time, n)
		wAmounts           = make([]int64, n)
		wTx                = make([]pgtype.UUID, n)
		wHashes, wResponse = make([][]byte, n), make([][]byte, n)
		entries            = make([]ledger.Entry, n)
	)
	for i, it := range winners {
		r := it.res
		txID, err := uuid.NewV7()
		if err != nil {
			return err
		}
		r.Ledger = ledger.Ref{TransactionID: txID, Programme: r.Programme}
		if wResponse[i], err = json.Marshal(recordedRedemption{Code: r.Code, Round: r.Round}); err != nil {
			return fmt.Errorf("redeem: encode response: %w", err)
		}
		wCodes[i], wRounds[i], wProgs[i], wSites[i] = int64(r.Code), int16(r.Round), pgUUID(r.Programme), pgUUID(r.Site)
		wServices[i], wMinutes[i], wDates[i], wAmounts[i], wAt[i] = r.Service, r.Minutes, r.ServiceDate, r.AmountCents, r.RedeemedAt
		wKeys[i], wOps[i], wHashes[i], wTx[i] = it.key, opRedeem, it.hash, pgUUID(txID)
		entries[i] = ledger.Entry{
			ID: txID, Programme: r.Programme, Kind: ledger.KindRedemption, Org: r.Site,
			IdempotencyKey: it.key, RequestHash: it.hash,
			Metadata: map[string]string{"code": r.Code.String(), "round": strconv.Itoa(int(r.Round)),
				"service_date": civil.FormatDate(r.ServiceDate), "minutes": strconv.Itoa(int(r.Minutes))},
			Postings: ledger.Move(ledger.AccountRef{Programme: r.Programme, Kind: ledger.Outstanding},
				ledger.AccountRef{Programme: r.Programme, Kind: ledger.SitePayable, Owner: r.Site}, r.AmountCents),
		}
	}
	b = &pgx.Batch{}
	// A generic plan, as for the reads above: this UPDATE was also planned on every call.
	ledger.QueueGenericPlans(b, func() {
		b.Queue(`
			UPDATE vouchers SET status = 'redeemed', rounds = rounds + 1, held_by = NULL, held_until = NULL
			 WHERE code = ANY($1)`, wCodes)
	})
	b.Queue(`
		INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
		                         amount_cents, redeemed_at, tx_id)
		SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::uuid[], $4::uuid[], $5::text[], $6::int[],
		                     $7::date[], $8::bigint[], $9::timestamptz[], $10::uuid[])`,
		wCodes, wRounds, wProgs, wSites, wServices, wMinutes, wDates, wAmounts, wAt, wTx)
	b.Queue(`
		INSERT INTO idempotency_keys (org_id, key, operation, request_hash, response)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::bytea[])`,
		wSites, wKeys, wOps, wHashes, wResponse)
	// One batch writes at a time, after the previous one committed: the next batch reads
	// meanwhile, and then chains onto a head that is committed.
	s.redeemer.writing.Lock()
	defer s.redeemer.writing.Unlock()
	clock.writing(time.Now())
	pp, err := s.l.PreparePost(ctx, tx, entries...)
	if err != nil {
		return fmt.Errorf("redeem %d vouchers: %w", n, err)
	}
	started = time.Now()
	posted, ok, err := pp.CommitAtKnownHeads(ctx, tx, b)
	if err != nil {
		return fmt.Errorf("redeem %d vouchers: %w", n, err)
	}
	if ok {
		since(phaseWriteCommit, started)
	} else {
		// The chain head is not known (the process's first batch, one after a failure, a retry):
		// lock it, read it, then write after it.
		pp.QueueLock(b)
		if err := tx.Send(ctx, b); err != nil {
			return fmt.Errorf("redeem %d vouchers: %w", n, err)
		}
		since(phaseWrite, started)
		b = &pgx.Batch{}
		if posted, err = pp.QueueWrite(b); err != nil {
			return fmt.Errorf("redeem %d vouchers: %w", n, err)
		}
		started = time.Now()
		if err := tx.Commit(ctx, b); err != nil {
			return fmt.Errorf("redeem %d vouchers: %w", n, err)
		}
		since(phaseCommit, started)
	}
	clock.written(time.Now())
	for i, it := range winners {
		it.res.Ledger.Seq = posted[i].Seq
	}
	return nil
}

// siteSelect reads what a redemption needs to know about sites (orgs.SiteInfo), like
// orgs.SiteForRedemption but for every site of a batch in one statement.
const siteSelect = `
	SELECT s.org_id, o.name, coalesce(o.departement, ''), s.status, s.valid_from, s.valid_until, s.services
	  FROM sites s JOIN organisations o ON o.id = s.org_id
	 WHERE s.org_id = ANY($1)`

func scanSite(row pgx.Row) (*orgs.SiteInfo, error) {
	var (
		si       orgs.SiteInfo
		from, to pgtype.Date
	)
	if err := row.Scan(&si.ID, &si.Name, &si.Departement, &si.Status, &from, &to, &si.Services); err != nil {
		return nil, fmt.Errorf("read sites: %w", err)
	}
	// Civil dates at UTC midnight, zero when never qualified, as orgs.SiteInfo has them.
	if from.Valid {
		si.ValidFrom = from.Time
	}
	if to.Valid {
		si.ValidUntil = to.Time
	}
	return &si, nil
}

// pgUUID wraps a UUID for pgx: arrays of uuid.UUID go through its driver.Valuer, which makes
// pgx format every element as text and parse it back (about 1.7 µs and 20 allocations per
// element, measured), where pgtype.UUID is encoded directly (about 60 ns).
func pgUUID(u uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: u, Valid: true} }

// recordedRedemption is what a redemption's idempotency record holds: which redemption
// answered the key, in Redemption's JSON names. The redemption row and its ledger
// transaction, both append-only, hold the rest of the answer, so replays read it from them;
// the whole response took some 430 bytes of JSON in every record and in the WAL, this
// takes under 40 (bench/README.md, session 6). Records written before held the whole response
// but its sequence number, and still replay.
type recordedRedemption struct {
	Code  vcode.Code `json:"code"`
	Round int32      `json:"round"`
}

// replayRedemption completes a replayed redemption, decoded from its idempotency record,
// from the redemption row and its ledger transaction.
func replayRedemption(ctx context.Context, tx ledger.Querier, r *Redemption) error {
	if r.Programme != uuid.Nil { // a record holding the whole response but its seq
		if err := tx.QueryRow(ctx, `SELECT seq FROM transactions WHERE id = $1`, r.Ledger.TransactionID).Scan(&r.Ledger.Seq); err != nil {
			return fmt.Errorf("replay redemption of %s: %w", r.Code, err)
		}
		return nil
	}
	var date pgtype.Date
	err := tx.QueryRow(ctx, `
		SELECT r.programme_id, r.site_id, r.service, r.minutes, r.service_date, r.amount_cents, r.redeemed_at,
		       r.tx_id, t.seq
		  FROM redemptions r JOIN transactions t ON t.id = r.tx_id
		 WHERE r.voucher_code = $1 AND r.round = $2`, int64(r.Code), r.Round).Scan(
		&r.Programme, &r.Site, &r.Service, &r.Minutes, &date, &r.AmountCents, &r.RedeemedAt,
		&r.Ledger.TransactionID, &r.Ledger.Seq)
	if err != nil {
		return fmt.Errorf("replay redemption of %s, round %d: %w", r.Code, r.Round, err)
	}
	// As the first answer had them: the service date a civil date at UTC midnight, the
	// instant in UTC.
	r.ServiceDate, r.RedeemedAt = date.Time, r.RedeemedAt.UTC()
	r.Ledger.Programme = r.Programme
	return nil
}

// Redeemer defaults. Two executors pipeline: while one writes and commits its batch in one
// round trip, chained onto the head the previous batch left
// (ledger.PendingPost.CommitAtKnownHeads), the other reads and locks the vouchers of the
// next. They write one at a time (redeemer.writing): an executor that chained onto the
// other's head while that batch was still in flight lost the race for the head's lock
// whenever its own writes were quicker, about 2,000 retries in make bench's latency run
// (bench/README.md, session 7). They collect one at a time too (redeemer.collecting), and
// pace cuts each batch so that its read ends as the write before it does.
const (
	defaultExecutors = 2
	defaultMaxBatch  = 256
	batchTimeout     = 30 * time.Second
)

// errRedeemerClosed is returned to requests queued when the service closes.
var errRedeemerClosed = errors.New("redeemer closed")

// redeemer groups concurrent redemptions into batches (group commit): the executor collecting
// takes everything queued, up to max, until pace cuts the batch, so a lone request is a batch
// of one and a busy programme commits many redemptions per lock of its hot rows.
type redeemer struct {
	s          *Service
	queue      chan *redeemItem
	max        int
	stop       chan struct{}
	wg         sync.WaitGroup
	writing    sync.Mutex // held by the executor writing and committing its batch
	collecting sync.Mutex // held by the executor collecting the next batch
	pace       pace

	mu     sync.RWMutex // held for reading while queueing, for writing to close
	closed bool
}

func startRedeemer(s *Service, executors, max int) *redeemer {
	if executors <= 0 {
		executors = defaultExecutors
	}
	if max <= 0 {
		max = defaultMaxBatch
	}
	r := &redeemer{s: s, queue: make(chan *redeemItem, executors*max), max: max, stop: make(chan struct{})}
	r.wg.Add(executors)
	for range executors {
		go r.run()
	}
	return r
}

// submit queues it and waits for its outcome (or for ctx: the redemption may still commit,
// and a retry with the same key then replays it).
func (r *redeemer) submit(ctx context.Context, it *redeemItem) error {
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return errRedeemerClosed
	}
	it.queued = time.Now()
	select {
	case r.queue <- it:
	case <-ctx.Done():
		r.mu.RUnlock()
		return ctx.Err()
	}
	r.mu.RUnlock()
	select {
	case <-it.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the executors once their current batch is committed and fails what is still
// queued. No request is queued after closed is set.
func (r *redeemer) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	r.wg.Wait()
	for {
		select {
		case it := <-r.queue:
			it.err = errRedeemerClosed
			close(it.done)
		default:
			return
		}
	}
}

type itemKey struct {
	org uuid.UUID
	key string
}

func (r *redeemer) run() {
	defer r.wg.Done()
	var carried []*redeemItem
	for {
		batch, clock, stopped := r.collect(carried)
		carried = nil
		if stopped {
			return
		}
		// A key already in the batch waits for the next one, where it replays the first.
		seen := make(map[itemKey]bool, len(batch))
		run := make([]*redeemItem, 0, len(batch))
		for _, it := range batch {
			k := itemKey{it.org, it.key}
			if seen[k] {
				carried = append(carried, it)
				continue
			}
			seen[k] = true
			run = append(run, it)
		}
		r.execute(run, clock)
		select {
		case <-r.stop:
			for _, it := range carried {
				it.err = errRedeemerClosed
				close(it.done)
			}
			return
		default:
		}
	}
}

// collect takes the next batch and returns it with its clock: carried requests at once;
// otherwise, one executor at a time, what is queued until the batch is full or pace cuts it.
// stopped is true, and nothing taken, when the redeemer closes while nothing is queued.
func (r *redeemer) collect(carried []*redeemItem) (batch []*redeemItem, clock *batchClock, stopped bool) {
	if len(carried) > 0 {
		// Requests carried over have waited a batch already, and the executor collecting may
		// be waiting for a request that never comes.
		return r.drain(carried), r.pace.cutNow(time.Now()), false
	}
	r.collecting.Lock()
	defer r.collecting.Unlock()
	select {
	case it := <-r.queue:
		batch = append(batch, it)
	case <-r.stop:
		return nil, nil, true
	}
	if wait := time.Until(r.pace.cutAt(time.Now(), batch[0].queued.Add(maxPaceWait))); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
	paced:
		for len(batch) < r.max {
			select {
			case it := <-r.queue:
				batch = append(batch, it)
			case <-t.C:
				break paced
			}
		}
	}
	return r.drain(batch), r.pace.cutNow(time.Now()), false
}

// drain adds to batch what is queued, up to max, without waiting.
func (r *redeemer) drain(batch []*redeemItem) []*redeemItem {
	for len(batch) < r.max {
		select {
		case it := <-r.queue:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// execute commits one batch. Items whose caller has gone are dropped first. If the batch
// fails as a whole, its items run again one by one, so that one bad item fails alone.
func (r *redeemer) execute(items []*redeemItem, clock *batchClock) {
	defer clock.end()
	live := items[:0]
	for _, it := range items {
		if err := it.ctx.Err(); err != nil {
			it.err = err
			close(it.done)
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return
	}
	now := time.Now()
	for _, it := range live {
		batchQueued.Observe(now.Sub(it.queued).Seconds())
	}
	batchSize.Observe(float64(len(live)))
	err := r.runBatch(live, clock)
	if err != nil && len(live) > 1 {
		r.s.log.Warn("redemption batch failed, redeeming its items one by one", "items", len(live), "error", err)
		for _, it := range live {
			if err := r.runBatch([]*redeemItem{it}, nil); err != nil {
				it.res, it.err = nil, err
			}
		}
	} else if err != nil {
		live[0].res, live[0].err = nil, err
	}
	for _, it := range live {
		close(it.done)
	}
}

func (r *redeemer) runBatch(items []*redeemItem, clock *batchClock) error {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	return r.s.l.RunPipelined(ctx, opRedeem, func(ctx context.Context, p *ledger.Pipeline) error {
		return r.s.redeemBatch(ctx, p, items, clock)
	})
}
