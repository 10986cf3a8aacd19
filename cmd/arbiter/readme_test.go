package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// readmeBlock is a fenced code block of README.md.
type readmeBlock struct{ lang, text string }

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeBlock
	for _, m := range regexp.MustCompile("(?ms)^```(\\w*)\n(.*?)^```").FindAllStringSubmatch(string(b), -1) {
		out = append(out, readmeBlock{m[1], m[2]})
	}
	return out
}

// readmeLinePattern turns a line of the README's sample output into a pattern of what the
// server must print: decision ids, times and the rest of an elided digest ("sha256:aef6...")
// vary, the rest must be as written.
func readmeLinePattern(line string) *regexp.Regexp {
	p := regexp.QuoteMeta(line)
	for _, r := range []struct{ from, to string }{
		{`[0-9a-f]{2}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`, `[0-9a-f]{2}-[0-9a-f-]{36}`}, // decision id
		{`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`, `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`},                                    // a time
		{`(sha256:[0-9a-f]+)\\\.\\\.\\\.`, `${1}[0-9a-f]*`},                                                       // an elided digest
	} {
		p = regexp.MustCompile(r.from).ReplaceAllString(p, r.to)
	}
	return regexp.MustCompile("^" + p + "$")
}

// TestREADMEExamples runs the README's examples against a real server (`arbiter serve`, the
// embedded store, the default policy), so that they cannot drift: the sample event through
// the `arbiter decide` command line as written, its output against the sample (action,
// reasons, policy id, version and digest, the explanation's first lines), and every grpcurl
// example's request body through the RPC it names (list and describe through reflection).
func TestREADMEExamples(t *testing.T) {
	blocks := readmeBlocks(t)
	var event, console, grpcurl string
	for _, b := range blocks {
		switch {
		case b.lang == "json" && event == "":
			event = b.text
		case b.lang == "console" && strings.HasPrefix(b.text, "$ bin/arbiter decide"):
			console = b.text
		case b.lang == "sh" && strings.Contains(b.text, "grpcurl"):
			grpcurl = b.text
		}
	}
	if event == "" || console == "" || grpcurl == "" {
		t.Fatalf("README.md: sample event found %v, decide sample %v, grpcurl examples %v; want all three", event != "", console != "", grpcurl != "")
	}
	grpcAddr, _, _, _ := startServe(t)
	dir := t.TempDir()
	eventFile := filepath.Join(dir, "event.json")
	if err := os.WriteFile(eventFile, []byte(event), 0o644); err != nil {
		t.Fatal(err)
	}

	// The `arbiter decide` sample: its command line as written, its output as shown.
	cmdLine, sample, _ := strings.Cut(console, "\n")
	args := strings.Fields(strings.TrimPrefix(cmdLine, "$ bin/arbiter "))
	for i, a := range args {
		if a == "event.json" {
			args[i] = eventFile
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), append(args, "--addr", grpcAddr), noEnv, nil, &out, io.Discard); err != nil {
		t.Fatalf("README's %q: %v", cmdLine, err)
	}
	got := strings.Split(out.String(), "\n")
	for i, want := range strings.Split(strings.TrimRight(sample, "\n"), "\n") {
		if strings.TrimSpace(want) == "..." {
			break // the rest is elided
		}
		if i >= len(got) || !readmeLinePattern(want).MatchString(got[i]) {
			t.Errorf("README's sample output line %d:\n  README: %s\n  server: %s\n(the whole output:\n%s)", i+1, want, line(got, i), out.String())
			break
		}
	}
	var decided arbiterv1.DecideResponse
	out.Reset()
	if err := run(t.Context(), []string{"decide", "--addr", grpcAddr, "--file", eventFile, "--json"}, noEnv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(out.Bytes(), &decided); err != nil || !decided.GetReplayed() {
		t.Errorf("the README's event sent again = replayed %v, %v; the README says it is replayed", decided.GetReplayed(), err)
	}

	// The grpcurl examples.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	calls := 0
	for _, ex := range grpcurlExamples(grpcurl) {
		switch ex.verb {
		case "list":
			for _, svc := range regexp.MustCompile(`[a-z.]+\.v1\.[A-Za-z]+`).FindAllString(ex.comment, -1) {
				if !reflectionLists(t, conn, svc) {
					t.Errorf("README: grpcurl list shows %s; reflection does not list it", svc)
				}
			}
			continue
		case "describe":
			if _, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(ex.target)); err != nil {
				t.Errorf("README: grpcurl describe %s: %v", ex.target, err)
			}
			continue
		}
		body := strings.ReplaceAll(ex.body, "<id from above>", decided.GetDecisionId())
		if body == "@" {
			body = event
		}
		resp := callJSON(t, conn, ex.target, body)
		calls++
		if ex.target == "arbiter.v1.FeatureService/PutFeatures" {
			// The features are stored as given.
			var put arbiterv1.PutFeaturesRequest
			if err := protojson.Unmarshal([]byte(body), &put); err != nil {
				t.Fatal(err)
			}
			st := callJSON(t, conn, "arbiter.v1.FeatureService/GetCustomerState", `{"customer_id": "`+put.GetCustomerId()+`"}`)
			got := st.(*arbiterv1.GetCustomerStateResponse).GetFeatures()
			if diff := cmp.Diff(put.GetFeatures(), got, protocmp.Transform(), protocmp.IgnoreEmptyMessages()); diff != "" {
				t.Errorf("README's PutFeatures example, then GetCustomerState features (-put +stored):\n%s", diff)
			}
		}
		if d, ok := resp.(*arbiterv1.GetDecisionResponse); ok && d.GetRecord().GetDecisionId() != decided.GetDecisionId() {
			t.Errorf("README's GetDecision example = record %q, want %q", d.GetRecord().GetDecisionId(), decided.GetDecisionId())
		}
	}
	if calls < 4 {
		t.Errorf("README: %d grpcurl calls run, want the four examples (Decide, GetDecision, GetCustomerState, PutFeatures)", calls)
	}

	// The metrics the README names are in docs/operations.md's table, which TestServeMetrics
	// holds to /metrics.
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := documentedMetrics(t)
	for _, name := range regexp.MustCompile(`arbiter_[a-z_]+`).FindAllString(string(readme), -1) {
		if _, ok := documented[name]; !ok {
			t.Errorf("README names the metric %s, which docs/operations.md (and /metrics) do not have", name)
		}
	}
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(none)"
}

// grpcurlExample is one grpcurl command of the README.
type grpcurlExample struct {
	verb    string // "list", "describe" or "" for a call
	target  string // service/method of a call, symbol of describe
	body    string // -d's JSON, "@" for stdin
	comment string
}

func grpcurlExamples(block string) []grpcurlExample {
	block = strings.ReplaceAll(block, "\\\n", " ") // continued lines
	call := regexp.MustCompile(`grpcurl -plaintext -d (?:'([^']*)'|(@))\s+\S+\s+(\S+)`)
	other := regexp.MustCompile(`grpcurl -plaintext \S+ (list|describe)\s*(\S*)\s*(#.*)?`)
	var out []grpcurlExample
	for l := range strings.Lines(block) {
		if m := call.FindStringSubmatch(l); m != nil {
			out = append(out, grpcurlExample{body: m[1] + m[2], target: m[3]})
		} else if m := other.FindStringSubmatch(l); m != nil {
			target := m[2]
			if strings.HasPrefix(target, "#") {
				target = ""
			}
			out = append(out, grpcurlExample{verb: m[1], target: target, comment: l})
		}
	}
	return out
}

// callJSON calls method ("pkg.Service/Method") with the JSON body, as grpcurl does, and
// returns the response; it fails t on an error.
func callJSON(t *testing.T, conn *grpc.ClientConn, method, body string) proto.Message {
	t.Helper()
	svc, name, _ := strings.Cut(method, "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		t.Fatalf("README: %s: %v", method, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	if md == nil {
		t.Fatalf("README: %s: no such method", method)
	}
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		t.Fatal(err)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	req, resp := in.New().Interface(), out.New().Interface()
	if err := protojson.Unmarshal([]byte(body), req); err != nil {
		t.Fatalf("README: %s body %s: %v", method, body, err)
	}
	if err := conn.Invoke(t.Context(), "/"+method, req, resp); err != nil {
		t.Fatalf("README: grpcurl %s -d '%s': %v", method, body, err)
	}
	return resp
}

// reflectionLists reports whether server reflection lists service svc.
func reflectionLists(t *testing.T, conn *grpc.ClientConn, svc string) bool {
	t.Helper()
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range resp.GetListServicesResponse().GetService() {
		if s.GetName() == svc {
			return true
		}
	}
	return false
}

// TestREADMECurl: the README's curl example, as written (its URL path and content type), sends
// the README's sample event to the gRPC port and gets the decision as JSON.
func TestREADMECurl(t *testing.T) {
	var event, curl string
	for _, b := range readmeBlocks(t) {
		switch {
		case b.lang == "json" && event == "":
			event = b.text
		case b.lang == "sh" && strings.Contains(b.text, "curl -X POST"):
			curl = b.text
		}
	}
	m := regexp.MustCompile(`curl -X POST http://127\.0\.0\.1:50051(/\S+) \\\n\s+-H '(Content-Type: [^']+)' -d @event\.json`).FindStringSubmatch(curl)
	if event == "" || m == nil {
		t.Fatalf("README.md: no sample event or no curl example of the expected form:\n%s", curl)
	}
	if m[2] != "Content-Type: application/json" {
		t.Fatalf("README's curl sends %q, want Content-Type: application/json", m[2])
	}
	grpcAddr, _, _, _ := startServe(t)
	code, out := postConnect(t, grpcAddr, m[1], "", event)
	if code != 200 || out["action"] != "ACTION_RETRY" || out["decisionId"] == "" {
		t.Errorf("README's curl example = %d %v, want 200 with the RETRY decision", code, out)
	}
}
