// Package sepa writes SEPA credit transfer initiation files (ISO 20022 pain.001.001.03), the
// files a bank takes to pay mediation sites.
//
// A file holds one payment information block: one debtor account, one requested execution date,
// charges shared (SLEV), service level SEPA, and one transaction per credit. Everything is
// checked before anything is written: a file is written whole or not at all. Amounts are int64
// cents and every sum is computed in integers.
package sepa

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
)

// Namespace is the XML namespace of pain.001.001.03 documents.
const Namespace = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"

// Limits from the EPC implementation guidelines and the pain.001.001.03 schema.
const (
	MaxAmountCents   = 99_999_999_999          // 999 999 999,99 € per transfer
	MaxTotalCents    = 999_999_999_999_999_999 // CtrlSum: 18 digits, 2 of them decimals
	MaxIDLength      = 35                      // MsgId, EndToEndId
	MaxNameLength    = 70                      // Nm
	MaxRemittanceLen = 140                     // Ustrd
)

// Fault reasons. Bad IBANs and BICs keep the reasons of package ident (IBAN_CHECKSUM, BIC_FORMAT
// and so on). A fault about one credit carries its 0-based position in metadata "credit_index"
// and its message names it from 1, as people count.
const (
	ReasonNoCredits     = "SEPA_NO_CREDITS"
	ReasonMessageID     = "SEPA_MESSAGE_ID"
	ReasonEndToEndID    = "SEPA_END_TO_END_ID"
	ReasonDuplicateID   = "SEPA_DUPLICATE_END_TO_END_ID"
	ReasonName          = "SEPA_NAME"
	ReasonRemittance    = "SEPA_REMITTANCE"
	ReasonAmount        = "SEPA_AMOUNT"
	ReasonTotal         = "SEPA_TOTAL"
	ReasonCreationTime  = "SEPA_CREATION_TIME"
	ReasonExecutionDate = "SEPA_EXECUTION_DATE"
)

// Party is an account holder: the debtor (the account paying) or a creditor (a site paid).
type Party struct {
	// Name is free text; accents and typographic signs are transliterated to the SEPA
	// character set, and the result must be 1 to 70 characters.
	Name string
	// IBAN is checked and normalised with ident.NormalizeIBAN.
	IBAN string
	// BIC is checked and normalised with ident.NormalizeBIC. It is required: sites give it
	// when they are qualified, and some banks still ask for it.
	BIC string
}

// Credit is one transfer to a creditor.
type Credit struct {
	Creditor Party
	// AmountCents is the amount in euro cents, 1 to MaxAmountCents.
	AmountCents int64
	// EndToEndID travels unchanged to the creditor's bank statement and comes back in returns,
	// so it identifies what is paid (typically the statement id). It must already be in the
	// SEPA character set (1 to 35 characters, no spaces, no leading, trailing or double '/'):
	// it is never transliterated, so that it still matches the stored value. It must be unique
	// within the file, so that one statement is never paid twice by the same file.
	EndToEndID string
	// Remittance is the unstructured remittance information shown to the creditor (Ustrd),
	// transliterated like names; at most 140 characters, and omitted when empty.
	Remittance string
}

// Payment is the content of one file.
type Payment struct {
	// MessageID identifies the file for the bank (GrpHdr/MsgId) and is reused as the payment
	// information id (PmtInf/PmtInfId). Same rules as Credit.EndToEndID.
	MessageID string
	// CreatedAt is written as GrpHdr/CreDtTm in its own location, to the second and without a
	// UTC offset (YYYY-MM-DDThh:mm:ss, as the CFONB guide shows).
	CreatedAt time.Time
	// ExecutionDate is the requested execution date: its calendar day in its own location. It
	// may not be before the day of CreatedAt.
	ExecutionDate time.Time
	// Debtor is the account the money leaves; its name is also written as the initiating party.
	Debtor Party
	// BatchBooking asks the bank to book the whole file as one debit (true) or one debit per
	// transfer (false). The zero value, false, keeps one line per statement on the debtor's
	// bank statement, which is what reconciliation needs.
	BatchBooking bool
	// Credits are written in order; there must be at least one.
	Credits []Credit
}

// Write checks p and writes it to w as a pain.001.001.03 document. If p is invalid it returns a
// fault of kind fault.Invalid and writes nothing; otherwise the document is written with a
// single call to w.Write.
func Write(w io.Writer, p Payment) error {
	doc, err := build(p)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("sepa: encode %s: %w", p.MessageID, err)
	}
	buf.WriteByte('\n')
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("sepa: write %s: %w", p.MessageID, err)
	}
	return nil
}

func build(p Payment) (*document, error) {
	if !validID(p.MessageID) {
		return nil, fault.New(fault.Invalid, ReasonMessageID,
			"L'identifiant du fichier de virements doit compter 1 à 35 caractères parmi les lettres sans accent, "+
				"les chiffres et / - ? : ( ) . , ' + (sans espace).",
			"field", "message_id")
	}
	if p.CreatedAt.IsZero() {
		return nil, fault.New(fault.Invalid, ReasonCreationTime,
			"La date de création du fichier de virements manque.", "field", "created_at")
	}
	if p.ExecutionDate.IsZero() || civilDate(p.ExecutionDate) < civilDate(p.CreatedAt) {
		return nil, fault.New(fault.Invalid, ReasonExecutionDate,
			"La date d'exécution des virements manque ou est déjà passée.", "field", "execution_date")
	}
	if len(p.Credits) == 0 {
		return nil, fault.New(fault.Invalid, ReasonNoCredits,
			"Le fichier de virements ne contient aucun virement.", "field", "credits")
	}
	debtor, err := party(p.Debtor, "Compte débiteur : ", "debtor")
	if err != nil {
		return nil, err
	}

	txs := make([]transfer, len(p.Credits))
	seen := make(map[string]int, len(p.Credits))
	var total int64
	for i, c := range p.Credits {
		at := func(reason, field, message string) error {
			return fault.New(fault.Invalid, reason, fmt.Sprintf("Virement n° %d : %s", i+1, message),
				"credit_index", strconv.Itoa(i), "field", "credits."+field)
		}
		if !validID(c.EndToEndID) {
			return nil, at(ReasonEndToEndID, "end_to_end_id",
				"la référence de bout en bout doit compter 1 à 35 caractères parmi les lettres sans accent, "+
					"les chiffres et / - ? : ( ) . , ' + (sans espace).")
		}
		if j, dup := seen[c.EndToEndID]; dup {
			return nil, at(ReasonDuplicateID, "end_to_end_id",
				fmt.Sprintf("la référence %s est déjà celle du virement n° %d : un même relevé serait payé deux fois.",
					c.EndToEndID, j+1))
		}
		seen[c.EndToEndID] = i
		if c.AmountCents <= 0 || c.AmountCents > MaxAmountCents {
			return nil, at(ReasonAmount, "amount",
				"le montant doit être positif et ne pas dépasser 999 999 999,99 €.")
		}
		// Each amount is at most 10¹¹ − 1, so the sum cannot overflow before the check fails.
		total += c.AmountCents
		if total > MaxTotalCents {
			return nil, at(ReasonTotal, "amount", "le total du fichier dépasse le maximum autorisé.")
		}
		cdtr, err := party(c.Creditor, fmt.Sprintf("Virement n° %d : ", i+1), "credits.creditor",
			"credit_index", strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		tx := transfer{
			EndToEndID: c.EndToEndID,
			Amount:     amount{Currency: "EUR", Value: decimal(c.AmountCents)},
			CdtrAgt:    agent{BIC: cdtr.bic},
			Cdtr:       name{Name: cdtr.name},
			CdtrAcct:   account{IBAN: cdtr.iban},
		}
		if c.Remittance != "" {
			ustrd := latin(c.Remittance)
			if len(ustrd) > MaxRemittanceLen {
				return nil, at(ReasonRemittance, "remittance",
					fmt.Sprintf("le libellé compte %d caractères, le maximum est %d.", len(ustrd), MaxRemittanceLen))
			}
			if ustrd != "" {
				tx.RmtInf = &remittance{Ustrd: ustrd}
			}
		}
		txs[i] = tx
	}

	count := strconv.Itoa(len(txs))
	sum := decimal(total)
	return &document{Initiation: initiation{
		GrpHdr: groupHeader{
			MsgID:    p.MessageID,
			CreDtTm:  p.CreatedAt.Format("2006-01-02T15:04:05"),
			NbOfTxs:  count,
			CtrlSum:  sum,
			InitgPty: name{Name: debtor.name},
		},
		PmtInf: paymentInfo{
			PmtInfID:    p.MessageID,
			PmtMtd:      "TRF",
			BtchBookg:   p.BatchBooking,
			NbOfTxs:     count,
			CtrlSum:     sum,
			PmtTpInf:    paymentType{ServiceLevel: "SEPA"},
			ReqdExctnDt: p.ExecutionDate.Format(time.DateOnly),
			Dbtr:        name{Name: debtor.name},
			DbtrAcct:    account{IBAN: debtor.iban},
			DbtrAgt:     agent{BIC: debtor.bic},
			ChrgBr:      "SLEV",
			CdtTrfTxInf: txs,
		},
	}}, nil
}

type checkedParty struct{ name, iban, bic string }

// party checks and normalises a debtor or creditor. Faults are prefixed with who is at fault and
// carry field names under field and any extra metadata kv.
func party(p Party, who, field string, kv ...string) (checkedParty, error) {
	wrap := func(err error, sub string) error {
		f, ok := fault.As(err)
		if !ok {
			return err
		}
		meta := maps.Clone(f.Metadata)
		if meta == nil {
			meta = make(map[string]string, 1+len(kv)/2)
		}
		meta["field"] = field + "." + sub
		for i := 0; i+1 < len(kv); i += 2 {
			meta[kv[i]] = kv[i+1]
		}
		return &fault.Error{Kind: f.Kind, Reason: f.Reason, Message: who + lowerFirst(f.Message), Metadata: meta}
	}
	var out checkedParty
	out.name = latin(p.Name)
	if out.name == "" || len(out.name) > MaxNameLength {
		return out, wrap(fault.New(fault.Invalid, ReasonName,
			fmt.Sprintf("le nom du titulaire du compte doit compter 1 à %d caractères.", MaxNameLength)), "name")
	}
	var err error
	if out.iban, err = ident.NormalizeIBAN(p.IBAN); err != nil {
		return out, wrap(err, "iban")
	}
	if out.bic, err = ident.NormalizeBIC(p.BIC); err != nil {
		return out, wrap(err, "bic")
	}
	return out, nil
}

// civilDate orders calendar days: yyyymmdd as an integer, in t's own location.
func civilDate(t time.Time) int {
	y, m, d := t.Date()
	return y*10000 + int(m)*100 + d
}

// decimal writes a positive number of cents as euros with exactly two decimals.
func decimal(cents int64) string {
	return fmt.Sprintf("%d.%02d", cents/100, cents%100)
}

// lowerFirst lower-cases the first letter of a message that follows a colon.
func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	r, size := utf8.DecodeRuneInString(s)
	return string(unicode.ToLower(r)) + s[size:]
}

type document struct {
	XMLName    xml.Name   `xml:"urn:iso:std:iso:20022:tech:xsd:pain.001.001.03 Document"`
	Initiation initiation `xml:"CstmrCdtTrfInitn"`
}

type initiation struct {
	GrpHdr groupHeader `xml:"GrpHdr"`
	PmtInf paymentInfo `xml:"PmtInf"`
}

type groupHeader struct {
	MsgID    string `xml:"MsgId"`
	CreDtTm  string `xml:"CreDtTm"`
	NbOfTxs  string `xml:"NbOfTxs"`
	CtrlSum  string `xml:"CtrlSum"`
	InitgPty name   `xml:"InitgPty"`
}

type paymentInfo struct {
	PmtInfID    string      `xml:"PmtInfId"`
	PmtMtd      string      `xml:"PmtMtd"`
	BtchBookg   bool        `xml:"BtchBookg"`
	NbOfTxs     string      `xml:"NbOfTxs"`
	CtrlSum     string      `xml:"CtrlSum"`
	PmtTpInf    paymentType `xml:"PmtTpInf"`
	ReqdExctnDt string      `xml:"ReqdExctnDt"`
	Dbtr        name        `xml:"Dbtr"`
	DbtrAcct    account     `xml:"DbtrAcct"`
	DbtrAgt     agent       `xml:"DbtrAgt"`
	ChrgBr      string      `xml:"ChrgBr"`
	CdtTrfTxInf []transfer  `xml:"CdtTrfTxInf"`
}

type paymentType struct {
	ServiceLevel string `xml:"SvcLvl>Cd"`
}

type name struct {
	Name string `xml:"Nm"`
}

type account struct {
	IBAN string `xml:"Id>IBAN"`
}

type agent struct {
	BIC string `xml:"FinInstnId>BIC"`
}

type transfer struct {
	EndToEndID string      `xml:"PmtId>EndToEndId"`
	Amount     amount      `xml:"Amt>InstdAmt"`
	CdtrAgt    agent       `xml:"CdtrAgt"`
	Cdtr       name        `xml:"Cdtr"`
	CdtrAcct   account     `xml:"CdtrAcct"`
	RmtInf     *remittance `xml:"RmtInf"`
}

type amount struct {
	Currency string `xml:"Ccy,attr"`
	Value    string `xml:",chardata"`
}

type remittance struct {
	Ustrd string `xml:"Ustrd"`
}
