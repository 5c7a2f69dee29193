package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passnum/passnum/internal/fault"
)

func TestEveryFaultKindHasACode(t *testing.T) {
	for k := fault.Invalid; k <= fault.Unauthenticated; k++ {
		code, ok := faultCodes[k]
		if !ok {
			t.Errorf("fault kind %s has no gRPC code", k)
		}
		if code == codes.OK || code == codes.Internal || code == codes.Unknown {
			t.Errorf("fault kind %s maps to %s", k, code)
		}
	}
}

func TestToStatusFault(t *testing.T) {
	f := fault.New(fault.Conflict, "IDEMPOTENCY_KEY_REUSED",
		"Cette clé d'idempotence a déjà servi pour une autre demande.", "key", "k-1")
	err := toStatus(fmt.Errorf("redeem ABC: %w", f))
	st := status.Convert(err)
	if st.Code() != codes.Aborted || st.Message() != f.Message {
		t.Fatalf("got %s %q", st.Code(), st.Message())
	}
	var info *errdetails.ErrorInfo
	var loc *errdetails.LocalizedMessage
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.LocalizedMessage:
			loc = d
		}
	}
	if info == nil || info.GetReason() != "IDEMPOTENCY_KEY_REUSED" || info.GetDomain() != "passnum" || info.GetMetadata()["key"] != "k-1" {
		t.Fatalf("ErrorInfo %v", info)
	}
	if loc == nil || loc.GetLocale() != "fr-FR" || loc.GetMessage() != f.Message {
		t.Fatalf("LocalizedMessage %v", loc)
	}
}

func TestToStatusOthers(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"canceled", fmt.Errorf("query: %w", context.Canceled), codes.Canceled, msgCanceled},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), codes.DeadlineExceeded, msgDeadline},
		{"plain", errors.New("pq: relation secret_table does not exist"), codes.Internal, msgInternal},
		{"status", status.Error(codes.Unimplemented, "method X not implemented"), codes.Unimplemented, "method X not implemented"},
		{"wrapped status", fmt.Errorf("ctx: %w", status.Error(codes.NotFound, "inner detail")), codes.Internal, msgInternal},
		{"unknown kind", &fault.Error{Kind: 99, Reason: "X", Message: "x"}, codes.Internal, msgInternal},
	}
	for _, tc := range cases {
		st := status.Convert(toStatus(tc.err))
		if st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("%s: got %s %q, want %s %q", tc.name, st.Code(), st.Message(), tc.code, tc.msg)
		}
	}
	if toStatus(nil) != nil {
		t.Error("nil error mapped to a status")
	}
}
