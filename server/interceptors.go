package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
)

// RequestIDHeader carries the request id: taken from the client if well formed, otherwise
// generated, and always returned in the response header.
const RequestIDHeader = "x-request-id"

const maxRequestIDBytes = 128

// call is what the interceptors learn about one RPC, shared down the chain through the
// context so that the logging interceptor (outermost) can report the principal that the
// authentication interceptor (inner) found.
type call struct {
	id        string
	principal *auth.Principal
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// requestID returns the request id of the RPC ctx belongs to, or "".
func requestID(ctx context.Context) string {
	if c := callFrom(ctx); c != nil {
		return c.id
	}
	return ""
}

// interceptors holds what the chain needs; its methods are the unary and stream
// interceptors, installed in this order: request id, logging (with error mapping and
// metrics), panic recovery, deadline, authentication, authorisation.
type interceptors struct {
	logger         *slog.Logger
	verifier       *auth.Verifier
	authz          *authorizer
	requestTimeout time.Duration
	streamTimeout  time.Duration
	metrics        *metrics
}

func (i *interceptors) unary() grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(
		i.unaryRequestID, i.unaryLog, i.unaryRecover, i.unaryDeadline, i.unaryAuthenticate, i.unaryAuthorize)
}

func (i *interceptors) stream() grpc.ServerOption {
	return grpc.ChainStreamInterceptor(
		i.streamRequestID, i.streamLog, i.streamRecover, i.streamDeadline, i.streamAuthenticate, i.streamAuthorize)
}

// wrappedStream lets stream interceptors replace the context and inspect received messages.
type wrappedStream struct {
	grpc.ServerStream
	ctx    context.Context
	onRecv func(m any) error
}

func (s *wrappedStream) Context() context.Context { return s.ctx }

func (s *wrappedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.onRecv != nil {
		return s.onRecv(m)
	}
	return nil
}

func withContext(ss grpc.ServerStream, ctx context.Context) grpc.ServerStream {
	return &wrappedStream{ServerStream: ss, ctx: ctx}
}

// --- request id

func newCall(ctx context.Context) (context.Context, *call) {
	c := &call{id: incomingRequestID(ctx)}
	return context.WithValue(ctx, callKey{}, c), c
}

// incomingRequestID returns the client's x-request-id if it is short and made of safe
// characters (it ends up in logs), else a new UUID.
func incomingRequestID(ctx context.Context) string {
	// ValueFromIncomingContext copies one key's values; FromIncomingContext would copy the
	// whole metadata, twice per RPC with authenticate.
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) == 1 && validRequestID(v[0]) {
		return v[0]
	}
	return uuid.NewString()
}

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDBytes {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':':
		default:
			return false
		}
	}
	return true
}

func (i *interceptors) unaryRequestID(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, c := newCall(ctx)
	if err := grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, c.id)); err != nil {
		i.logger.WarnContext(ctx, "cannot set request id header", "request_id", c.id, "error", err)
	}
	return handler(ctx, req)
}

func (i *interceptors) streamRequestID(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, c := newCall(ss.Context())
	if err := ss.SetHeader(metadata.Pairs(RequestIDHeader, c.id)); err != nil {
		i.logger.WarnContext(ctx, "cannot set request id header", "request_id", c.id, "error", err)
	}
	return handler(srv, withContext(ss, ctx))
}

// --- logging, error mapping, metrics

func (i *interceptors) unaryLog(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	return resp, i.finish(ctx, info.FullMethod, start, err)
}

func (i *interceptors) streamLog(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	return i.finish(ss.Context(), info.FullMethod, start, err)
}

// finish maps err to the status sent to the client (errors.go), writes the one log line of
// the RPC and records metrics. The token is never logged; the real error always is.
func (i *interceptors) finish(ctx context.Context, method string, start time.Time, err error) error {
	out := toStatus(err)
	code := status.Code(out)
	elapsed := time.Since(start)
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
	}
	if c := callFrom(ctx); c != nil {
		attrs = append(attrs, slog.String("request_id", c.id))
		if c.principal != nil {
			attrs = append(attrs, slog.String("org", c.principal.Org.String()), slog.String("role", string(c.principal.Role)))
		}
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		if f, ok := fault.As(err); ok {
			attrs = append(attrs, slog.String("reason", f.Reason))
		}
	}
	i.logger.LogAttrs(ctx, levelFor(code), "rpc", attrs...)
	i.metrics.observe(method, code, elapsed)
	return out
}

func levelFor(code codes.Code) slog.Level {
	switch code {
	case codes.OK, codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.FailedPrecondition, codes.Aborted, codes.OutOfRange:
		return slog.LevelInfo
	case codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted, codes.DeadlineExceeded:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// --- panic recovery

func (i *interceptors) recovered(ctx context.Context, method string, r any) error {
	i.logger.ErrorContext(ctx, "panic in RPC", "method", method, "request_id", requestID(ctx),
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, msgInternal)
}

func (i *interceptors) unaryRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, i.recovered(ctx, info.FullMethod, r)
		}
	}()
	return handler(ctx, req)
}

func (i *interceptors) streamRecover(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = i.recovered(ss.Context(), info.FullMethod, r)
		}
	}()
	return handler(srv, ss)
}

// --- deadline

// bound applies the server's deadline unless the client asked for a shorter one.
func bound(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= limit {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, limit)
}

func (i *interceptors) unaryDeadline(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, cancel := bound(ctx, i.requestTimeout)
	defer cancel()
	return handler(ctx, req)
}

// streamDeadline bounds streaming RPCs, except the public ones: a health Watch is meant to
// stay open.
func (i *interceptors) streamDeadline(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if isPublic(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx, cancel := bound(ss.Context(), i.streamTimeout)
	defer cancel()
	return handler(srv, withContext(ss, ctx))
}

// --- authentication

var errSeveralAuthorizations = fault.New(fault.Unauthenticated, auth.ReasonTokenMalformed,
	"Un seul en-tête authorization est accepté.")

// authenticate verifies the bearer token and stores the principal in the context (and in
// the call, for the log line). Public methods need no token.
func (i *interceptors) authenticate(ctx context.Context, method string) (context.Context, error) {
	if isPublic(method) {
		return ctx, nil
	}
	values := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(values) > 1 {
		return ctx, errSeveralAuthorizations
	}
	header := ""
	if len(values) == 1 {
		header = values[0]
	}
	p, err := i.verifier.VerifyAuthorization(header)
	if err != nil {
		return ctx, err
	}
	if c := callFrom(ctx); c != nil {
		c.principal = &p
	}
	return auth.WithPrincipal(ctx, p), nil
}

func (i *interceptors) unaryAuthenticate(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := i.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (i *interceptors) streamAuthenticate(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := i.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, withContext(ss, ctx))
}

// --- authorisation

var errNoPrincipal = errors.New("authorisation reached without an authenticated principal")

func (i *interceptors) unaryAuthorize(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if isPublic(info.FullMethod) {
		return handler(ctx, req)
	}
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return nil, errNoPrincipal
	}
	if err := i.authz.allowMethod(ctx, info.FullMethod, p); err != nil {
		return nil, err
	}
	if err := i.authz.checkRequest(ctx, info.FullMethod, p, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// streamAuthorize checks the role before the handler starts, and the objects of every
// message the handler receives (for a server-streaming RPC, its one request, which the
// generated code reads before calling the implementation).
func (i *interceptors) streamAuthorize(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if isPublic(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx := ss.Context()
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return errNoPrincipal
	}
	if err := i.authz.allowMethod(ctx, info.FullMethod, p); err != nil {
		return err
	}
	return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx, onRecv: func(m any) error {
		return i.authz.checkRequest(ctx, info.FullMethod, p, m)
	}})
}

// --- metrics

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics registers the RPC metrics with reg; nil reg means no metrics. Registering
// twice with the same registry (several servers in one process) reuses the collectors.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passnum_grpc_requests_total",
		Help: "gRPC requests handled, by full method and status code.",
	}, []string{"method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "passnum_grpc_request_duration_seconds",
		Help:    "gRPC request duration, by full method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"method"})
	var err error
	if requests, err = registerCollector(reg, requests); err != nil {
		return nil, err
	}
	if duration, err = registerCollector(reg, duration); err != nil {
		return nil, err
	}
	return &metrics{requests: requests, duration: duration}, nil
}

func registerCollector[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) observe(method string, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(method, code.String()).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
}
