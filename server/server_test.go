package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
)

// testService is grpc's interop TestService; it counts the calls that reach it.
type testService struct {
	testpb.UnimplementedTestServiceServer
	calls     atomic.Int64
	mu        sync.Mutex
	deadline  time.Time
	principal auth.Principal
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.calls.Add(1)
	dl, _ := ctx.Deadline()
	p, _ := auth.PrincipalFrom(ctx)
	s.mu.Lock()
	s.deadline, s.principal = dl, p
	s.mu.Unlock()
	switch string(req.GetPayload().GetBody()) {
	case "panic":
		panic("handler exploded")
	case "fault":
		return nil, fmt.Errorf("load voucher: %w", fault.New(fault.NotFound, "VOUCHER_NOT_FOUND", "Ce chèque n'existe pas.", "code", "ABC"))
	case "boom":
		return nil, errors.New("connect to db: password=hunter2 refused")
	}
	return &testpb.SimpleResponse{Username: p.Subject}, nil
}

func (s *testService) CacheableUnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.calls.Add(1)
	return &testpb.SimpleResponse{}, nil
}

func (s *testService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	s.calls.Add(1)
	return &testpb.Empty{}, nil
}

func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	dl, _ := stream.Context().Deadline()
	s.mu.Lock()
	s.deadline = dl
	s.mu.Unlock()
	return stream.Send(&testpb.StreamingOutputCallResponse{})
}

// orgRule names the organisation (or All, for "ALL") in the payload body.
func orgRule(body []byte) []access.Resource {
	if string(body) == "ALL" {
		return []access.Resource{access.All}
	}
	return ids(access.Organization(string(body)))
}

var testPolicy = policy{
	roles: map[string][]auth.Role{
		testpb.TestService_UnaryCall_FullMethodName:           {op, si},
		testpb.TestService_CacheableUnaryCall_FullMethodName:  {op, fu, si},
		testpb.TestService_StreamingOutputCall_FullMethodName: {op, si},
		// EmptyCall is registered but deliberately missing.
	},
	objects: map[string]objectRule{
		testpb.TestService_CacheableUnaryCall_FullMethodName: on(func(r *testpb.SimpleRequest) []access.Resource {
			return orgRule(r.GetPayload().GetBody())
		}),
		testpb.TestService_StreamingOutputCall_FullMethodName: on(func(r *testpb.StreamingOutputCallRequest) []access.Resource {
			return orgRule(r.GetPayload().GetBody())
		}),
	},
}

// ownership is an in-memory access.Ownership: organisation id → owners.
type ownership struct {
	lookups atomic.Int64
	owners  map[string][]uuid.UUID
}

func (o *ownership) Owners(_ context.Context, r access.Resource) (access.Owners, error) {
	o.lookups.Add(1)
	if r.ID == "broken" {
		return access.Owners{}, errors.New("query owners: connection reset")
	}
	orgs, ok := o.owners[r.ID]
	if !ok {
		return access.Owners{}, fault.New(fault.NotFound, "NOT_FOUND", "introuvable")
	}
	return access.Owners{Orgs: orgs}, nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log records.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

type fixture struct {
	svc      *testService
	own      *ownership
	conn     *grpc.ClientConn
	client   testpb.TestServiceClient
	key      ed25519.PrivateKey
	kid      string
	minter   *auth.Minter
	logs     *syncBuffer
	registry *prometheus.Registry
	siteOrg  uuid.UUID
}

func newFixture(t *testing.T, edit func(*Config)) *fixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := auth.KeyID(pub)
	ks, err := auth.NewKeySet(auth.PublicKey{KID: kid, Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		svc:      &testService{},
		key:      priv,
		kid:      kid,
		minter:   auth.NewMinter(priv, kid, auth.DefaultIssuer, auth.DefaultAudience),
		logs:     &syncBuffer{},
		registry: prometheus.NewRegistry(),
		siteOrg:  uuid.New(),
	}
	f.own = &ownership{owners: map[string][]uuid.UUID{"mine": {f.siteOrg}, "theirs": {uuid.New()}}}
	cfg := Config{
		Verifier:   auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience),
		Logger:     slog.New(slog.NewJSONHandler(f.logs, nil)),
		Reflection: true,
		Metrics:    f.registry,
	}
	if edit != nil {
		edit(&cfg)
	}
	s := build(cfg, App{Access: f.own}, testPolicy, []func(*grpc.Server, App){
		func(s *grpc.Server, _ App) { testpb.RegisterTestServiceServer(s, f.svc) },
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	f.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.conn.Close() })
	f.client = testpb.NewTestServiceClient(f.conn)
	return f
}

func (f *fixture) token(t *testing.T, role auth.Role) string {
	t.Helper()
	org := f.siteOrg
	if role != auth.RoleSite {
		org = uuid.New()
	}
	tok, err := f.minter.Mint(auth.Principal{Subject: "tester", Org: org, Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func withToken(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func body(s string) *testpb.SimpleRequest {
	return &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(s)}}
}

func wantCode(t *testing.T, err error, code codes.Code) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("got %s %q, want %s", st.Code(), st.Message(), code)
	}
	return st
}

func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetReason()
		}
	}
	return ""
}

func (f *fixture) wantNoCall(t *testing.T) {
	t.Helper()
	if n := f.svc.calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times, want never", n)
	}
}

// signed returns a token signed with key under kid, for claims edited from a valid set.
func signed(t *testing.T, method jwt.SigningMethod, key any, kid string, edit func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss": auth.DefaultIssuer, "aud": []string{auth.DefaultAudience}, "sub": "x",
		"org": uuid.NewString(), "role": "site",
		"nbf": now.Unix(), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUnauthenticated(t *testing.T) {
	f := newFixture(t, nil)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	pub := f.key.Public().(ed25519.PublicKey)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
		"iss": auth.DefaultIssuer, "aud": auth.DefaultAudience, "sub": "x", "org": uuid.NewString(), "role": "operator",
		"nbf": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		ctx    context.Context
		reason string
	}{
		"no token": {context.Background(), auth.ReasonTokenMissing},
		"expired": {withToken(signed(t, jwt.SigningMethodEdDSA, f.key, f.kid, func(c jwt.MapClaims) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
		})), auth.ReasonTokenExpired},
		"unknown key":            {withToken(signed(t, jwt.SigningMethodEdDSA, otherKey, "someone-else", nil)), auth.ReasonTokenUnknownKey},
		"other key, trusted kid": {withToken(signed(t, jwt.SigningMethodEdDSA, otherKey, f.kid, nil)), auth.ReasonTokenInvalid},
		"alg none":               {withToken(none), auth.ReasonTokenInvalid},
		"HS256 with public key":  {withToken(signed(t, jwt.SigningMethodHS256, []byte(pub), f.kid, nil)), auth.ReasonTokenInvalid},
		"basic scheme":           {metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic YTpi"), auth.ReasonTokenMalformed},
		"two authorization": {metadata.AppendToOutgoingContext(context.Background(),
			"authorization", "Bearer "+f.token(t, auth.RoleSite), "authorization", "Bearer "+f.token(t, auth.RoleSite)), auth.ReasonTokenMalformed},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := f.client.UnaryCall(tc.ctx, body("hello"))
			st := wantCode(t, err, codes.Unauthenticated)
			if got := reasonOf(st); got != tc.reason {
				t.Errorf("reason %q, want %q", got, tc.reason)
			}
			if !strings.HasPrefix(st.Message(), "Jeton") && !strings.HasPrefix(st.Message(), "En-tête") && !strings.HasPrefix(st.Message(), "Un seul") {
				t.Errorf("message %q is not the French explanation", st.Message())
			}
			f.wantNoCall(t)
		})
	}
	// Streams are guarded the same way.
	stream, err := f.client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.Unauthenticated)
	f.wantNoCall(t)
}

func TestAllowedCallLogsAndEchoesRequestID(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.token(t, auth.RoleSite)
	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(withToken(tok), RequestIDHeader, "req-42")
	resp, err := f.client.UnaryCall(ctx, body("hello"), grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetUsername() != "tester" {
		t.Fatalf("handler saw subject %q", resp.GetUsername())
	}
	if got := header.Get(RequestIDHeader); len(got) != 1 || got[0] != "req-42" {
		t.Fatalf("request id header %v, want req-42", got)
	}
	// An unsafe client id is replaced by a fresh UUID.
	ctx = metadata.AppendToOutgoingContext(withToken(tok), RequestIDHeader, "bad id \"quoted\" "+strings.Repeat("x", 200))
	if _, err := f.client.UnaryCall(ctx, body("hello"), grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := header.Get(RequestIDHeader); len(got) != 1 || uuid.Validate(got[0]) != nil {
		t.Fatalf("request id header %v, want a UUID", got)
	}

	logs := f.logs.String()
	if strings.Contains(logs, tok) || strings.Contains(logs, tok[strings.LastIndex(tok, ".")+1:]) {
		t.Fatal("the token appears in the logs")
	}
	var found bool
	for _, l := range f.logs.lines(t) {
		if l["msg"] == "rpc" && l["request_id"] == "req-42" {
			found = true
			if l["method"] != testpb.TestService_UnaryCall_FullMethodName || l["code"] != "OK" ||
				l["org"] != f.siteOrg.String() || l["role"] != "site" || l["duration_ms"] == nil {
				t.Fatalf("log line %v", l)
			}
		}
	}
	if !found {
		t.Fatalf("no rpc log line for req-42 in:\n%s", logs)
	}
	if n := requestCount(t, f.registry, testpb.TestService_UnaryCall_FullMethodName, "OK"); n != 2 {
		t.Fatalf("requests_total = %v, want 2", n)
	}
}

func requestCount(t *testing.T, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != "passnum_grpc_requests_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestWrongRoleDenied(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.client.UnaryCall(withToken(f.token(t, auth.RoleFunder)), body("hello"))
	st := wantCode(t, err, codes.PermissionDenied)
	if reasonOf(st) != ReasonRoleNotAllowed || !strings.Contains(st.Message(), "financeur") {
		t.Fatalf("got %q %q", reasonOf(st), st.Message())
	}
	stream, err := f.client.StreamingOutputCall(withToken(f.token(t, auth.RoleDistributor)), &testpb.StreamingOutputCallRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.PermissionDenied)
	f.wantNoCall(t)
}

func TestMethodMissingFromTableDenied(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.client.EmptyCall(withToken(f.token(t, auth.RoleOperator)), &testpb.Empty{})
	st := wantCode(t, err, codes.PermissionDenied)
	if reasonOf(st) != ReasonMethodNotAllowed {
		t.Fatalf("reason %q", reasonOf(st))
	}
	f.wantNoCall(t)
	if !strings.Contains(f.logs.String(), "method missing from the authorisation table") {
		t.Fatal("refusal of an unlisted method was not logged")
	}
}

func TestObjectChecks(t *testing.T) {
	f := newFixture(t, nil)
	site := withToken(f.token(t, auth.RoleSite))
	operator := withToken(f.token(t, auth.RoleOperator))

	if _, err := f.client.CacheableUnaryCall(site, body("mine")); err != nil {
		t.Fatalf("owner refused: %v", err)
	}
	if n := f.svc.calls.Load(); n != 1 {
		t.Fatalf("calls %d", n)
	}
	f.svc.calls.Store(0)

	for _, id := range []string{"theirs", "does-not-exist"} {
		_, err := f.client.CacheableUnaryCall(site, body(id))
		st := wantCode(t, err, codes.PermissionDenied)
		if reasonOf(st) != ReasonObjectNotAllowed {
			t.Fatalf("%s: reason %q", id, reasonOf(st))
		}
	}
	_, err := f.client.CacheableUnaryCall(site, body("ALL"))
	if st := wantCode(t, err, codes.PermissionDenied); reasonOf(st) != ReasonOperatorOnly {
		t.Fatalf("ALL: reason %q", reasonOf(st))
	}
	_, err = f.client.CacheableUnaryCall(site, body("broken"))
	if st := wantCode(t, err, codes.Internal); st.Message() != msgInternal {
		t.Fatalf("ownership failure leaked %q", st.Message())
	}
	stream, err := f.client.StreamingOutputCall(site, &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("theirs")}})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.PermissionDenied)
	f.wantNoCall(t)

	// Operators pass every object check without a lookup.
	lookups := f.own.lookups.Load()
	for _, id := range []string{"theirs", "does-not-exist", "ALL"} {
		if _, err := f.client.CacheableUnaryCall(operator, body(id)); err != nil {
			t.Fatalf("operator refused %s: %v", id, err)
		}
	}
	stream, err = f.client.StreamingOutputCall(operator, &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("theirs")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("operator stream: %v", err)
	}
	if f.own.lookups.Load() != lookups {
		t.Fatal("operator calls asked the ownership source")
	}
}

func TestErrorsMappedByInterceptor(t *testing.T) {
	f := newFixture(t, nil)
	ctx := withToken(f.token(t, auth.RoleSite))
	_, err := f.client.UnaryCall(ctx, body("fault"))
	st := wantCode(t, err, codes.NotFound)
	if st.Message() != "Ce chèque n'existe pas." || reasonOf(st) != "VOUCHER_NOT_FOUND" {
		t.Fatalf("got %q %q", st.Message(), reasonOf(st))
	}
	_, err = f.client.UnaryCall(ctx, body("boom"))
	if st := wantCode(t, err, codes.Internal); st.Message() != msgInternal {
		t.Fatalf("internal error leaked: %q", st.Message())
	}
	var logged bool
	for _, l := range f.logs.lines(t) {
		if l["code"] == "Internal" && strings.Contains(l["error"].(string), "hunter2") && l["request_id"] != "" && l["level"] == "ERROR" {
			logged = true
		}
	}
	if !logged {
		t.Fatalf("internal error not logged with its cause and request id:\n%s", f.logs.String())
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	f := newFixture(t, nil)
	ctx := withToken(f.token(t, auth.RoleSite))
	_, err := f.client.UnaryCall(ctx, body("panic"))
	if st := wantCode(t, err, codes.Internal); st.Message() != msgInternal {
		t.Fatalf("message %q", st.Message())
	}
	if _, err := f.client.UnaryCall(ctx, body("hello")); err != nil {
		t.Fatalf("server does not serve after a panic: %v", err)
	}
	var stack bool
	for _, l := range f.logs.lines(t) {
		if l["msg"] == "panic in RPC" && l["panic"] == "handler exploded" &&
			strings.Contains(l["stack"].(string), "UnaryCall") && l["request_id"] != "" {
			stack = true
		}
	}
	if !stack {
		t.Fatalf("panic not logged with stack:\n%s", f.logs.String())
	}
}

func TestServerDeadline(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RequestTimeout, c.StreamTimeout = 2*time.Second, 3*time.Second })
	ctx := withToken(f.token(t, auth.RoleSite))
	deadline := func() time.Duration {
		f.svc.mu.Lock()
		defer f.svc.mu.Unlock()
		return time.Until(f.svc.deadline)
	}
	if _, err := f.client.UnaryCall(ctx, body("hello")); err != nil {
		t.Fatal(err)
	}
	if d := deadline(); d <= 0 || d > 2*time.Second {
		t.Fatalf("no client deadline: handler has %s left, want at most 2s", d)
	}
	long, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	if _, err := f.client.UnaryCall(long, body("hello")); err != nil {
		t.Fatal(err)
	}
	if d := deadline(); d > 2*time.Second {
		t.Fatalf("1h client deadline: handler has %s left, want at most 2s", d)
	}
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if _, err := f.client.UnaryCall(short, body("hello")); err != nil {
		t.Fatal(err)
	}
	if d := deadline(); d > 500*time.Millisecond {
		t.Fatalf("short client deadline not kept: %s left", d)
	}
	stream, err := f.client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if d := deadline(); d <= 2*time.Second || d > 3*time.Second {
		t.Fatalf("stream without client deadline: handler has %s left, want the 3s stream timeout", d)
	}
}

func TestMessageTooLarge(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxRecvMsgBytes = 1 << 10 })
	_, err := f.client.UnaryCall(withToken(f.token(t, auth.RoleSite)), body(strings.Repeat("x", 2<<10)))
	wantCode(t, err, codes.ResourceExhausted)
	f.wantNoCall(t)
	if _, err := f.client.UnaryCall(withToken(f.token(t, auth.RoleSite)), body("small")); err != nil {
		t.Fatal(err)
	}
}

// A large authorization header. With the server's header list limit (16 KiB by default
// here; gRPC's own default is 16 MiB), a 1 MiB header never reaches the interceptors: the
// grpc-go client, told the limit by the server's HTTP/2 SETTINGS before it uses the
// connection, refuses to send it (INTERNAL, "header list size to send violates the maximum
// size (16384 bytes) set by server"). A client that ignores the limit has its stream reset
// or its connection closed by the server (TestJunkHeaderFromRawHTTP2Client). Between the verifier's 8 KiB limit and
// the transport's, the verifier refuses the header by its length alone.
func TestJunkAuthorizationHeader(t *testing.T) {
	f := newFixture(t, nil)
	junk := "Bearer " + strings.Repeat("a.", 1<<19)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", junk)
	start := time.Now()
	_, err := f.client.UnaryCall(ctx, body("hello"))
	st := status.Convert(err)
	if st.Code() == codes.OK {
		t.Fatal("1 MiB authorization header accepted")
	}
	t.Logf("1 MiB header: %s %q in %s", st.Code(), st.Message(), time.Since(start))
	if st.Code() != codes.Internal && st.Code() != codes.ResourceExhausted && st.Code() != codes.Unauthenticated {
		t.Fatalf("1 MiB header: unexpected %s", st.Code())
	}
	f.wantNoCall(t)

	// 12 KiB: past the verifier's limit, under the transport's.
	mid := "Bearer " + strings.Repeat("a.", 6<<10)
	_, err = f.client.UnaryCall(metadata.AppendToOutgoingContext(context.Background(), "authorization", mid), body("hello"))
	if st := wantCode(t, err, codes.Unauthenticated); reasonOf(st) != auth.ReasonTokenTooLarge {
		t.Fatalf("12 KiB header: reason %q", reasonOf(st))
	}
	f.wantNoCall(t)

	// The connection and the server are fine afterwards.
	if _, err := f.client.UnaryCall(withToken(f.token(t, auth.RoleSite)), body("hello")); err != nil {
		t.Fatal(err)
	}
}

// With gRPC's default 16 MiB header list limit a 1 MiB header does reach the verifier,
// which still refuses it on its length alone.
func TestJunkAuthorizationHeaderReachesVerifier(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxHeaderListBytes = 16 << 20 })
	junk := "Bearer " + strings.Repeat("a.", 1<<19)
	_, err := f.client.UnaryCall(metadata.AppendToOutgoingContext(context.Background(), "authorization", junk), body("hello"))
	if st := wantCode(t, err, codes.Unauthenticated); reasonOf(st) != auth.ReasonTokenTooLarge {
		t.Fatalf("reason %q", reasonOf(st))
	}
	f.wantNoCall(t)
}

func TestHealthAndReflectionNeedNoToken(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := healthpb.NewHealthClient(f.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %s", resp.GetStatus())
	}
	svc, err := healthpb.NewHealthClient(f.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
	if err != nil || svc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("service health %v %v", svc, err)
	}

	rs, err := reflectionpb.NewServerReflectionClient(f.conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	out, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range out.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "grpc.testing.TestService") {
		t.Fatalf("reflection lists %v", names)
	}
}

// A client that ignores the server's SETTINGS and sends a 1 MiB header block anyway (raw
// HTTP/2) is cut off by the server's transport before any interceptor or handler runs: a
// header value longer than the limit is an HPACK decoding error, so the server closes the
// connection (a list merely too long in total would get its stream reset instead).
func TestJunkHeaderFromRawHTTP2Client(t *testing.T) {
	f := newFixture(t, nil)
	conn, err := net.Dial("tcp", f.conn.Target())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, hf := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: testpb.TestService_UnaryCall_FullMethodName},
		{Name: ":authority", Value: "localhost"},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: "authorization", Value: "Bearer " + strings.Repeat("a.", 1<<19)},
	} {
		if err := enc.WriteField(hf); err != nil {
			t.Fatal(err)
		}
	}
	const chunk = 16 << 10
	data := block.Bytes()
	writeErr := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: data[:chunk]})
	for off := chunk; writeErr == nil && off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		writeErr = fr.WriteContinuation(1, end == len(data), data[off:end])
	}
	var outcome string
	for outcome == "" {
		frame, err := fr.ReadFrame()
		if err != nil {
			outcome = "connection closed: " + err.Error()
			break
		}
		switch fr := frame.(type) {
		case *http2.RSTStreamFrame:
			outcome = "RST_STREAM " + fr.ErrCode.String()
		case *http2.GoAwayFrame:
			outcome = "GOAWAY " + fr.ErrCode.String()
		case *http2.HeadersFrame:
			if fr.StreamID == 1 {
				t.Fatal("server answered the oversized request with headers")
			}
		}
	}
	t.Logf("raw 1 MiB header block: write error %v; server: %s", writeErr, outcome)
	f.wantNoCall(t)
	if _, err := f.client.UnaryCall(withToken(f.token(t, auth.RoleSite)), body("hello")); err != nil {
		t.Fatalf("server does not serve after the junk: %v", err)
	}
}

// Streams get the server's stream deadline, except a health Watch, which stays open.
func TestHealthWatchOutlivesStreamTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.StreamTimeout = 100 * time.Millisecond })
	w, err := healthpb.NewHealthClient(f.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := w.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watch update %v %v", first, err)
	}
	next := make(chan error, 1)
	go func() {
		_, err := w.Recv()
		next <- err
	}()
	select {
	case err := <-next:
		t.Fatalf("watch ended after the stream timeout: %v", err)
	case <-time.After(400 * time.Millisecond):
	}
}
