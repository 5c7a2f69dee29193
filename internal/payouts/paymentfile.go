package payouts

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/frtext"
	"github.com/passnum/passnum/internal/sepa"
)

// PaymentFile is a SEPA credit transfer file (pain.001.001.03) and its figures.
type PaymentFile struct {
	MessageID       string
	XML             []byte
	Transactions    int32
	ControlSumCents int64
	Statements      []uuid.UUID // in the order of the file's transfers
}

// ExportPaymentFile writes the SEPA credit transfer file paying approved statements: one
// transfer per statement to its site's account, for the statement's total, with the
// statement number as end-to-end id and remittance information. With no ids it takes every
// approved statement not yet in a file; ids name approved statements explicitly, including
// ones already exported (a file lost before reaching the bank). The debtor is the operator's
// account from Config. The file is stored and its message id recorded on the statements, in
// one transaction. executionDate is the requested execution date (zero: today). Operator only.
func (s *Service) ExportPaymentFile(ctx context.Context, p auth.Principal, ids []uuid.UUID, executionDate time.Time) (*PaymentFile, error) {
	if err := requireRole(p, auth.RoleOperator); err != nil {
		return nil, err
	}
	now := s.now()
	today := civil.DateOf(now)
	if executionDate.IsZero() {
		executionDate = today
	}
	if executionDate.Before(today) {
		return nil, fault.New(fault.Invalid, "EXECUTION_DATE_PASSED",
			fmt.Sprintf("La date d'exécution des virements (%s) est déjà passée.", frtext.Date(executionDate)),
			"field", "execution_date")
	}
	var out *PaymentFile
	err := s.l.RunInTx(ctx, "payouts.ExportPaymentFile", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		out, err = s.exportPaymentFile(ctx, tx, p.Org, ids, now, executionDate)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

type payee struct {
	id     uuid.UUID
	number string
	status string
	total  int64
	name   string
	iban   *string
	bic    *string
}

func (s *Service) exportPaymentFile(ctx context.Context, tx pgx.Tx, by uuid.UUID, ids []uuid.UUID,
	now, executionDate time.Time) (*PaymentFile, error) {
	var rows pgx.Rows
	var err error
	const cols = `SELECT s.id, s.number, s.status, s.total_cents, o.name, si.iban, si.bic
		  FROM statements s
		  JOIN sites si ON si.org_id = s.site_id
		  JOIN organisations o ON o.id = s.site_id`
	if len(ids) == 0 {
		rows, err = tx.Query(ctx, cols+`
		 WHERE s.status = 'approved' AND s.payment_message_id IS NULL
		 ORDER BY s.number FOR UPDATE OF s`)
	} else {
		rows, err = tx.Query(ctx, cols+`
		 WHERE s.id = ANY($1)
		 ORDER BY s.number FOR UPDATE OF s`, ids)
	}
	if err != nil {
		return nil, fmt.Errorf("payment file: read statements: %w", err)
	}
	payees, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (payee, error) {
		var p payee
		err := row.Scan(&p.id, &p.number, &p.status, &p.total, &p.name, &p.iban, &p.bic)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("payment file: read statements: %w", err)
	}
	if len(ids) > 0 {
		found := make(map[uuid.UUID]bool, len(payees))
		for _, p := range payees {
			found[p.id] = true
		}
		for _, id := range ids {
			if !found[id] {
				return nil, statementNotFound(id)
			}
		}
	}
	if len(payees) == 0 {
		return nil, fault.New(fault.FailedPrecondition, "NO_STATEMENTS_TO_PAY",
			"Aucun relevé validé n'attend de virement.")
	}

	msgID, err := messageID()
	if err != nil {
		return nil, err
	}
	pay := sepa.Payment{
		MessageID:     msgID,
		CreatedAt:     now.In(civil.Paris),
		ExecutionDate: executionDate,
		Debtor:        sepa.Party{Name: s.debtor.name, IBAN: s.debtor.iban, BIC: s.debtor.bic},
	}
	stIDs := make([]uuid.UUID, len(payees))
	var total int64
	for i, p := range payees {
		if p.status != StatusApproved {
			return nil, fault.New(fault.FailedPrecondition, "STATEMENT_NOT_APPROVED",
				fmt.Sprintf("Seul un relevé validé peut être payé : le relevé %s est « %s ».", p.number, statusLabels[p.status]),
				"statement_id", p.id.String(), "status", p.status)
		}
		if p.iban == nil || p.bic == nil {
			return nil, fault.New(fault.FailedPrecondition, "SITE_BANK_DETAILS_MISSING",
				fmt.Sprintf("Le lieu « %s » n'a pas d'IBAN ou de BIC : le relevé %s ne peut pas être payé.", p.name, p.number),
				"statement_id", p.id.String())
		}
		pay.Credits = append(pay.Credits, sepa.Credit{
			Creditor:    sepa.Party{Name: p.name, IBAN: *p.iban, BIC: *p.bic},
			AmountCents: p.total,
			EndToEndID:  p.number,
			Remittance:  "Pass numerique releve " + p.number,
		})
		stIDs[i] = p.id
		total += p.total
	}
	var buf bytes.Buffer
	if err := sepa.Write(&buf, pay); err != nil {
		return nil, fmt.Errorf("payment file %s: %w", msgID, err)
	}
	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO payment_files (message_id, execution_date, transactions, control_sum_cents, xml, created_by)
		VALUES ($1, $2, $3, $4, $5, $6)`, msgID, executionDate, len(payees), total, buf.Bytes(), by)
	b.Queue(`UPDATE statements SET payment_message_id = $1 WHERE id = ANY($2)`, msgID, stIDs)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("payment file %s: record: %w", msgID, err)
	}
	return &PaymentFile{
		MessageID:       msgID,
		XML:             buf.Bytes(),
		Transactions:    int32(len(payees)),
		ControlSumCents: total,
		Statements:      stIDs,
	}, nil
}

// messageID is a new file id: "PN" and the 32 hex digits of a time-ordered UUID (34
// characters, within SEPA's 35).
func messageID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("payment file id: %w", err)
	}
	return "PN" + strings.ToUpper(hex.EncodeToString(id[:])), nil
}
