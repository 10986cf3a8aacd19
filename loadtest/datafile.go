package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// The RPCs a data file can send.
const (
	RPCDecide           = "Decide"
	RPCRecordOutcome    = "RecordOutcome"
	RPCGetDecision      = "GetDecision"
	RPCPutFeatures      = "PutFeatures"
	RPCGetCustomerState = "GetCustomerState"
)

var dataRPCs = []string{RPCDecide, RPCRecordOutcome, RPCGetDecision, RPCPutFeatures, RPCGetCustomerState}

// DataRequest is one request of a data file: the RPC it goes to and its message.
type DataRequest struct {
	RPC string
	Msg proto.Message
}

// maxDataErrors is how many bad lines ReadDataFile reports before it stops looking.
const maxDataErrors = 10

// ReadDataFile reads a load test's own requests, one JSON object a line (JSON lines; empty
// lines and lines starting with # are skipped). A line is either a DecideRequest, as
// `arbiter decide` and grpcurl take it, or an envelope that names the RPC:
//
//	{"rpc": "Decide", "request": {"event": {...}, "customer": {...}}}
//	{"rpc": "RecordOutcome", "request": {"decision_id": "", "outcome": "OUTCOME_DELIVERED"}}
//	{"rpc": "GetDecision", "request": {}}
//	{"rpc": "PutFeatures", "request": {"customer_id": "cust-1", "features": {"days_past_due": 12}}}
//	{"rpc": "GetCustomerState", "request": {"customer_id": "cust-1"}}
//
// The request is the RPC's request message in protojson. A RecordOutcome or GetDecision whose
// decision_id is empty gets the id of the latest decision the run was answered (see
// DataTarget). The error names every bad line (up to 10) by number.
func ReadDataFile(r io.Reader) ([]DataRequest, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	var out []DataRequest
	var bad []string
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		req, err := parseDataLine(line)
		if err != nil {
			bad = append(bad, "line "+strconv.Itoa(n)+": "+err.Error())
			if len(bad) == maxDataErrors {
				break
			}
			continue
		}
		out = append(out, req)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("data file: %w", err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("data file: %s", strings.Join(bad, "; "))
	}
	if len(out) == 0 {
		return nil, errors.New("data file: no requests")
	}
	return out, nil
}

func parseDataLine(line []byte) (DataRequest, error) {
	var env struct {
		RPC     string          `json:"rpc"`
		Request json.RawMessage `json:"request"`
	}
	if err := json.Unmarshal(line, &env); err != nil {
		return DataRequest{}, fmt.Errorf("not a JSON object: %v", err)
	}
	if env.RPC == "" && env.Request == nil {
		// A bare DecideRequest.
		env.RPC, env.Request = RPCDecide, line
	}
	var msg proto.Message
	switch env.RPC {
	case RPCDecide:
		msg = &arbiterv1.DecideRequest{}
	case RPCRecordOutcome:
		msg = &arbiterv1.RecordOutcomeRequest{}
	case RPCGetDecision:
		msg = &arbiterv1.GetDecisionRequest{}
	case RPCPutFeatures:
		msg = &arbiterv1.PutFeaturesRequest{}
	case RPCGetCustomerState:
		msg = &arbiterv1.GetCustomerStateRequest{}
	default:
		return DataRequest{}, fmt.Errorf("rpc %q: want one of %s", env.RPC, strings.Join(dataRPCs, ", "))
	}
	if env.Request == nil {
		env.Request = []byte("{}")
	}
	if err := protojson.Unmarshal(env.Request, msg); err != nil {
		return DataRequest{}, fmt.Errorf("%s request: %v", env.RPC, err)
	}
	return DataRequest{RPC: env.RPC, Msg: msg}, nil
}

// dataTarget sends a data file's requests in order.
type dataTarget struct {
	reqs      []DataRequest
	decisions []arbiterv1.DecisionServiceClient
	features  []arbiterv1.FeatureServiceClient
	// latest is the id of the latest decision answered, recorded and not a dry run, for the
	// requests that leave decision_id empty.
	latest atomic.Pointer[string]
}

// DataTarget returns the Target that sends reqs (from ReadDataFile) in order, request i being
// reqs[i mod len(reqs)] over connection i mod len(conns). On each pass after the first, a
// Decide's event id gets the suffix "~PASS", so that it is decided anew rather than replayed.
func DataTarget(conns []grpc.ClientConnInterface, reqs []DataRequest) Target {
	t := &dataTarget{reqs: reqs}
	for _, c := range conns {
		t.decisions = append(t.decisions, arbiterv1.NewDecisionServiceClient(c))
		t.features = append(t.features, arbiterv1.NewFeatureServiceClient(c))
	}
	return t
}

type dataCall struct {
	conn int
	rpc  string
	msg  proto.Message
}

func (t *dataTarget) Prepare(i uint64) any {
	n := uint64(len(t.reqs))
	r := t.reqs[i%n]
	c := dataCall{conn: int(i % uint64(len(t.decisions))), rpc: r.RPC, msg: r.Msg}
	if pass := i / n; pass > 0 && r.RPC == RPCDecide {
		req := proto.CloneOf(r.Msg.(*arbiterv1.DecideRequest))
		if req.Event != nil {
			req.Event.Id += "~" + strconv.FormatUint(pass, 10)
		}
		c.msg = req
	}
	return c
}

func (t *dataTarget) Call(ctx context.Context, req any) (Reply, error) {
	c := req.(dataCall)
	rep := Reply{RPC: c.rpc}
	dc, fc := t.decisions[c.conn], t.features[c.conn]
	var err error
	switch m := c.msg.(type) {
	case *arbiterv1.DecideRequest:
		var resp *arbiterv1.DecideResponse
		if resp, err = dc.Decide(ctx, m); err == nil {
			rep.Action = strings.TrimPrefix(resp.GetAction().String(), "ACTION_")
			rep.Degraded, rep.Replayed = resp.GetDegraded(), resp.GetReplayed()
			if !resp.GetDegraded() && !resp.GetDryRun() {
				id := resp.GetDecisionId()
				t.latest.Store(&id)
			}
		}
	case *arbiterv1.RecordOutcomeRequest:
		_, err = dc.RecordOutcome(ctx, t.withDecision(m).(*arbiterv1.RecordOutcomeRequest))
	case *arbiterv1.GetDecisionRequest:
		_, err = dc.GetDecision(ctx, t.withDecision(m).(*arbiterv1.GetDecisionRequest))
	case *arbiterv1.PutFeaturesRequest:
		_, err = fc.PutFeatures(ctx, m)
	case *arbiterv1.GetCustomerStateRequest:
		_, err = fc.GetCustomerState(ctx, m)
	}
	return rep, err
}

// withDecision returns m with the latest decision id when its decision_id is empty.
func (t *dataTarget) withDecision(m proto.Message) proto.Message {
	latest := t.latest.Load()
	switch r := m.(type) {
	case *arbiterv1.RecordOutcomeRequest:
		if r.GetDecisionId() == "" && latest != nil {
			c := proto.CloneOf(r)
			c.DecisionId = *latest
			return c
		}
	case *arbiterv1.GetDecisionRequest:
		if r.GetDecisionId() == "" && latest != nil {
			return &arbiterv1.GetDecisionRequest{DecisionId: *latest}
		}
	}
	return m
}
