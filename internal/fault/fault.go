// Package fault is the domain error type shared by every layer below the gRPC server.
//
// A fault carries what a client needs to act: a kind (mapped to a gRPC code in one place,
// server/errors.go), a stable machine-readable reason, a plain-French message that can be
// shown to a volunteer at a mediation site, and optional metadata (ids, dates).
package fault

import (
	"errors"
	"fmt"
)

// Kind classifies a fault; the server maps each kind to exactly one gRPC code.
type Kind int

const (
	Invalid            Kind = iota + 1 // bad input; nothing was changed
	NotFound                           // the object does not exist (or is not visible)
	AlreadyExists                      // a unique thing already exists
	FailedPrecondition                 // the system is not in a state that allows this
	PermissionDenied                   // authenticated but not allowed
	Conflict                           // idempotency key reuse, concurrent change
	ResourceExhausted                  // rate limits, size limits
	Unauthenticated                    // no or bad credentials
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not_found"
	case AlreadyExists:
		return "already_exists"
	case FailedPrecondition:
		return "failed_precondition"
	case PermissionDenied:
		return "permission_denied"
	case Conflict:
		return "conflict"
	case ResourceExhausted:
		return "resource_exhausted"
	case Unauthenticated:
		return "unauthenticated"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a domain error. Reason is UPPER_SNAKE and stable (clients switch on it);
// Message is French, for people; Metadata holds values a client can act on.
type Error struct {
	Kind     Kind
	Reason   string
	Message  string
	Metadata map[string]string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (%s)", e.Kind, e.Reason, e.Message)
}

// New builds a fault; kv are metadata key/value pairs.
func New(kind Kind, reason, message string, kv ...string) *Error {
	e := &Error{Kind: kind, Reason: reason, Message: message}
	if len(kv) > 0 {
		e.Metadata = make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			e.Metadata[kv[i]] = kv[i+1]
		}
	}
	return e
}

// InvalidField is the common "bad input" fault for one field.
func InvalidField(field, message string) *Error {
	return New(Invalid, "INVALID_"+upper(field), message, "field", field)
}

// As returns the fault wrapped in err, if any.
func As(err error) (*Error, bool) {
	var f *Error
	if errors.As(err, &f) {
		return f, true
	}
	return nil, false
}

// Is reports whether err wraps a fault with the given reason.
func Is(err error, reason string) bool {
	f, ok := As(err)
	return ok && f.Reason == reason
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c == '.' || c == '-':
			b[i] = '_'
		}
	}
	return string(b)
}
