package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/passnum/passnum/internal/vcode"
)

// maxIssueRatio is the issuance target: OrderBooks within 1.5× a raw COPY of its rows.
const maxIssueRatio = 1.5

// issueScenario times OrderBooks of o.issueBooks books through the API, then a raw COPY of
// as many voucher rows of the same shape into a bare table, each after a checkpoint so that
// neither pays for the other's dirty pages.
func (b *bench) issueScenario(ctx context.Context) error {
	w := b.world
	if w == nil {
		var err error
		if w, err = b.seedOrgs(ctx, 0); err != nil {
			return err
		}
		b.world = w
	}
	vouchers := int64(b.o.issueBooks) * perBook
	prog, err := b.createFundedProgramme(ctx, w, "issue", vouchers)
	if err != nil {
		return err
	}
	if err := b.checkpoint(ctx); err != nil {
		return err
	}
	if _, err := b.statementCosts(ctx, 0); err != nil {
		return err
	}
	b.log.Info("issuance: OrderBooks through the API", "books", b.o.issueBooks, "vouchers", vouchers)
	began := time.Now()
	order, err := b.orderBooks(ctx, w, prog, "bench-order-issue", b.o.issueBooks)
	if err != nil {
		return fmt.Errorf("OrderBooks of %d books: %w", b.o.issueBooks, err)
	}
	orderTook := time.Since(began)
	if order.GetVouchers() != vouchers {
		return fmt.Errorf("OrderBooks issued %d vouchers, want %d", order.GetVouchers(), vouchers)
	}
	b.log.Info("issuance: OrderBooks done", "took", orderTook.Round(time.Millisecond))
	statements, err := b.statementCosts(ctx, 8)
	if err != nil {
		return err
	}
	if len(statements) > 0 {
		b.res.addInfo("statements of OrderBooks, by total time (pg_stat_statements):\n    %s", strings.Join(statements, "\n    "))
	}

	if err := b.checkpoint(ctx); err != nil {
		return err
	}
	copyTook, err := b.rawCopy(ctx, int(vouchers))
	if err != nil {
		return err
	}
	b.log.Info("issuance: raw COPY done", "took", copyTook.Round(time.Millisecond))
	b.res.peerRatio(figIssue, orderTook.Seconds(), "s", copyTook.Seconds(), "COPY s", maxIssueRatio, false,
		fmt.Sprintf("OrderBooks of %d books × %d vouchers through gRPC (%.0f vouchers/s: ledger issuance, order and books "+
			"written; codes are keyed, so voucher rows come at hand-out) against pgx CopyFrom of %d voucher rows "+
			"into a bare table with the vouchers' columns, both committed with fsync",
			b.o.issueBooks, perBook, float64(vouchers)/orderTook.Seconds(), vouchers))
	return nil
}

func (b *bench) checkpoint(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CHECKPOINT")
	return err
}

// rawCopy creates a bare table with the vouchers' columns (their types and defaults; no
// key, index, constraint or trigger), and times one transaction that copies n rows of the
// vouchers' shape into it with pgx CopyFrom, as issuing with codes drawn at random would
// write them: random 60-bit codes, one programme, book numbers, positions 1..10 and the face
// value.
func (b *bench) rawCopy(ctx context.Context, n int) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		CREATE TABLE bench_copy_vouchers (
		    code             bigint,
		    programme_id     uuid,
		    book_number      bigint,
		    position         smallint,
		    face_value_cents bigint,
		    status           text     DEFAULT 'in_stock',
		    rounds           smallint DEFAULT 0,
		    held_by          uuid,
		    held_until       timestamptz)`); err != nil {
		return 0, err
	}
	codes, err := vcode.Generate(n)
	if err != nil {
		return 0, err
	}
	prog := pgtype.UUID{Bytes: uuid.New(), Valid: true}
	row := make([]any, 5)
	began := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	copied, err := tx.CopyFrom(ctx, pgx.Identifier{"bench_copy_vouchers"},
		[]string{"code", "programme_id", "book_number", "position", "face_value_cents"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			row[0], row[1], row[2], row[3], row[4] = int64(codes[i]), prog, int64(1+i/perBook), int16(1+i%perBook), int64(faceValue)
			return row, nil
		}))
	if err != nil {
		return 0, fmt.Errorf("raw COPY: %w", err)
	}
	if copied != int64(n) {
		return 0, fmt.Errorf("raw COPY copied %d rows, want %d", copied, n)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	took := time.Since(began)
	_, err = conn.Exec(ctx, "DROP TABLE bench_copy_vouchers")
	return took, err
}
