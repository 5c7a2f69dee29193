package server

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passnum/passnum/internal/fault"
)

// ErrorDomain is the ErrorInfo domain of every passnum fault.
const ErrorDomain = "passnum"

// faultCodes is the one mapping of domain fault kinds to gRPC codes.
//
// Conflict maps to ABORTED: the request collided with another one (a concurrent change, or
// an idempotency key already used for a different request). Retrying the same request
// unchanged will not help; the client re-reads and decides, switching on ErrorInfo.reason
// (e.g. IDEMPOTENCY_KEY_REUSED means "use a new key"). ALREADY_EXISTS stays for creating a
// thing that exists, and FAILED_PRECONDITION for state that must be fixed first.
var faultCodes = map[fault.Kind]codes.Code{
	fault.Invalid:            codes.InvalidArgument,
	fault.NotFound:           codes.NotFound,
	fault.AlreadyExists:      codes.AlreadyExists,
	fault.FailedPrecondition: codes.FailedPrecondition,
	fault.PermissionDenied:   codes.PermissionDenied,
	fault.Conflict:           codes.Aborted,
	fault.ResourceExhausted:  codes.ResourceExhausted,
	fault.Unauthenticated:    codes.Unauthenticated,
}

// Messages for errors that are not faults.
const (
	msgInternal = "erreur interne"
	msgCanceled = "requête annulée"
	msgDeadline = "délai de traitement dépassé, réessayez"
)

// toStatus turns a handler or interceptor error into the status sent to the client:
//   - a *fault.Error (anywhere in the chain) becomes its kind's code with the French message,
//     an ErrorInfo (reason, domain "passnum", metadata) and a LocalizedMessage (fr-FR);
//   - a status error produced by gRPC or the interceptors is sent as is;
//   - context cancellation and deadline become CANCELLED and DEADLINE_EXCEEDED;
//   - anything else becomes INTERNAL "erreur interne"; the caller logs the real error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if f, ok := fault.As(err); ok {
		return faultStatus(f)
	}
	if se, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return se.GRPCStatus().Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msgCanceled)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msgDeadline)
	}
	return status.Error(codes.Internal, msgInternal)
}

func faultStatus(f *fault.Error) error {
	code, ok := faultCodes[f.Kind]
	if !ok {
		return status.Error(codes.Internal, msgInternal)
	}
	st, err := status.New(code, f.Message).WithDetails(
		&errdetails.ErrorInfo{Reason: f.Reason, Domain: ErrorDomain, Metadata: f.Metadata},
		&errdetails.LocalizedMessage{Locale: "fr-FR", Message: f.Message},
	)
	if err != nil {
		// Only fails if the details cannot be marshalled; the code and message still go.
		return status.Error(code, f.Message)
	}
	return st.Err()
}
