package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
)

// postConnect POSTs body as Connect JSON to method on the gRPC port and returns the status
// code and the decoded JSON answer.
func postConnect(t *testing.T, addr, method, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+method, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", method, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s = %d %q: not JSON: %v", method, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, out
}

// TestServeConnectJSON: the gRPC port answers curl-style Connect JSON and native gRPC on the
// same address; a card number in the JSON is refused as in protobuf; an oversized body fails.
func TestServeConnectJSON(t *testing.T) {
	grpcAddr, _, _, _ := startServe(t)
	code, out := postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "", sampleEvent)
	if code != http.StatusOK || out["action"] == nil || out["decisionId"] == nil || out["policy"] == nil {
		t.Fatalf("Connect Decide = %d %v, want 200 with action, decisionId, policy", code, out)
	}

	// Native gRPC on the same port reads the decision Connect made.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, err := arbiterv1.NewDecisionServiceClient(conn).GetDecision(t.Context(),
		&arbiterv1.GetDecisionRequest{DecisionId: out["decisionId"].(string)})
	if err != nil {
		t.Fatalf("gRPC GetDecision of the Connect decision: %v", err)
	}
	if a := got.GetRecord().GetResponse().GetAction().String(); a != out["action"] {
		t.Errorf("gRPC GetDecision action = %s, Connect answered %v", a, out["action"])
	}

	// A card number in a JSON string field: INVALID_ARGUMENT naming the field, as in protobuf.
	pan := strings.Replace(sampleEvent, `"source": "billing"`, `"source": "4111 1111 1111 1111"`, 1)
	pan = strings.Replace(pan, "evt-0001", "evt-0002", 1)
	code, out = postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "", pan)
	if code != http.StatusBadRequest || out["code"] != "invalid_argument" || !strings.Contains(out["message"].(string), "event.source") {
		t.Errorf("Connect Decide with a card number = %d %v, want 400 invalid_argument naming event.source", code, out)
	}
	if strings.Contains(out["message"].(string), "4111") {
		t.Errorf("refusal %q echoes the card number", out["message"])
	}

	// A card number as a JSON number in a feature value is refused too.
	code, out = postConnect(t, grpcAddr, "/arbiter.v1.FeatureService/PutFeatures", "",
		`{"customerId": "cust-123", "features": {"note": 4111111111111111}}`)
	if code != http.StatusBadRequest || out["code"] != "invalid_argument" || !strings.Contains(out["message"].(string), "features") {
		t.Errorf("Connect PutFeatures with a card number as a number = %d %v, want 400 invalid_argument naming the feature", code, out)
	}

	// Malformed JSON: invalid_argument, not a crash or INTERNAL.
	code, out = postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "", `{"event": 12}`)
	if code != http.StatusBadRequest || out["code"] != "invalid_argument" {
		t.Errorf("Connect Decide with bad JSON = %d %v, want 400 invalid_argument", code, out)
	}

	// A body over HTTPBodyFactor × the message limit is cut short.
	big := `{"event": {"id": "evt-big", "type": "EVENT_TYPE_INVOICE_OVERDUE", "source": "` +
		strings.Repeat("x", guard.DefaultMaxRecvMsgSize*guard.HTTPBodyFactor) + `"}}`
	code, out = postConnect(t, grpcAddr, "/arbiter.v1.DecisionService/Decide", "", big)
	if code == http.StatusOK {
		t.Errorf("Connect Decide with a %d-byte body = %d %v, want a refusal", len(big), code, out)
	}
}

// TestServeGRPCWeb: a gRPC-Web call (as a browser sends it) over HTTP/1.1 on the gRPC port.
func TestServeGRPCWeb(t *testing.T) {
	grpcAddr, _, _, _ := startServe(t)
	msg, err := proto.Marshal(&arbiterv1.GetDecisionRequest{DecisionId: "no-such-decision"})
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost,
		"http://"+grpcAddr+"/arbiter.v1.DecisionService/GetDecision", bytes.NewReader(append(frame, msg...)))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	// NOT_FOUND (5) comes in the headers (trailers-only) or in the trailer frame.
	if resp.Header.Get("Grpc-Status") != "5" && !bytes.Contains(body, []byte("grpc-status:5")) {
		t.Errorf("gRPC-Web GetDecision of an unknown id = %d %v %q, want grpc-status 5", resp.StatusCode, resp.Header, body)
	}
}

// TestServeConnectAuth: with tokens, a Connect call is refused before its body is read, and
// passes with a token of the method's role.
func TestServeConnectAuth(t *testing.T) {
	const decideTok, readTok = "arb_connect-decide-0123456789", "arb_connect-read-0123456789"
	tokens := filepath.Join(t.TempDir(), "clients.yaml")
	if err := os.WriteFile(tokens, []byte("clients:\n"+
		"- {name: gateway, token_sha256: "+guard.HashToken(decideTok)+", roles: [decide]}\n"+
		"- {name: reader, token_sha256: "+guard.HashToken(readTok)+", roles: [read]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	grpcAddr, _, _, _ := startServe(t, "--auth-tokens", tokens)
	const decide = "/arbiter.v1.DecisionService/Decide"
	for _, tc := range []struct {
		name, token string
		code        int
		want        string
	}{
		{"no token", "", http.StatusUnauthorized, "unauthenticated"},
		{"bad token", "arb_wrong", http.StatusUnauthorized, "unauthenticated"},
		{"wrong role", readTok, http.StatusForbidden, "permission_denied"},
	} {
		code, out := postConnect(t, grpcAddr, decide, tc.token, sampleEvent)
		if code != tc.code || out["code"] != tc.want {
			t.Errorf("%s: Connect Decide = %d %v, want %d %s", tc.name, code, out, tc.code, tc.want)
		}
	}
	if code, out := postConnect(t, grpcAddr, decide, decideTok, sampleEvent); code != http.StatusOK {
		t.Errorf("Connect Decide with the decide token = %d %v, want 200", code, out)
	}

	// Authentication before the body: headers announce a body that never comes; the refusal
	// arrives anyway.
	c, err := net.Dial("tcp", grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "POST "+decide+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufioReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to an unauthenticated call whose body never came: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unauthenticated call, body pending = %d, want 401", resp.StatusCode)
	}
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
