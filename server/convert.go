package server

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// The decision enums mirror the protobuf enums value for value, so conversions are plain type
// conversions. Requests are validated before conversion, so every value is a known one.

// ts converts a time to a timestamp; the zero time becomes nil.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// tsIn is ts writing into dst, a slot of an array of timestamps allocated at once; it
// returns dst, or nil for the zero time.
func tsIn(dst *timestamppb.Timestamp, t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	dst.Seconds, dst.Nanos = t.Unix(), int32(t.Nanosecond())
	return dst
}

// fromTS converts a timestamp to a time in UTC; nil becomes the zero time.
func fromTS(p *timestamppb.Timestamp) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.AsTime()
}

// InputFromRequest returns the engine's view of the event and customer of req. The request
// is not validated here: callers outside the Decide pipeline (policy diff, replay tools) use
// it to evaluate requests the way the server does.
func InputFromRequest(req *arbiterv1.DecideRequest) decision.Input {
	var in decision.Input
	toInput(req, &in)
	return in
}

// toInput fills in's event and customer from a validated request.
func toInput(req *arbiterv1.DecideRequest, in *decision.Input) {
	ev, cu := req.GetEvent(), req.GetCustomer()
	in.Event = decision.Event{
		ID:         ev.GetId(),
		Type:       decision.EventType(ev.GetType()),
		OccurredAt: fromTS(ev.GetOccurredAt()),
		Source:     ev.GetSource(),
		Attributes: ev.GetAttributes(),
	}
	if p := ev.GetPayment(); p != nil {
		in.Event.Payment = &decision.PaymentFailure{
			DeclineCode:        p.GetDeclineCode(),
			Network:            decision.Network(p.GetNetwork()),
			MerchantAdviceCode: p.GetMerchantAdviceCode(),
			AmountMinor:        p.GetAmountMinor(),
			Currency:           p.GetCurrency(),
			Acquirer:           p.GetAcquirer(),
			CardRef:            p.GetCardRef(),
			Initiator:          decision.Initiator(p.GetInitiator()),
			MerchantID:         p.GetMerchantId(),
		}
	}
	in.Customer = decision.Customer{
		ID:         cu.GetId(),
		Timezone:   cu.GetTimezone(),
		Vulnerable: cu.GetVulnerable(),
		Locale:     cu.GetLocale(),
		Segment:    cu.GetSegment(),
	}
	if cs := cu.GetConsents(); len(cs) > 0 {
		in.Customer.Consents = make([]decision.Consent, len(cs))
		for i, c := range cs {
			in.Customer.Consents[i] = decision.Consent{
				Channel: decision.Channel(c.GetChannel()),
				Purpose: decision.Purpose(c.GetPurpose()),
				Granted: c.GetGranted(),
			}
		}
	}
	if pc := cu.GetPreferredChannels(); len(pc) > 0 {
		in.Customer.PreferredChannels = make([]decision.Channel, len(pc))
		for i, c := range pc {
			in.Customer.PreferredChannels[i] = decision.Channel(c)
		}
	}
}

// toResponse converts the engine's result to the answer of decision id, decided at now.
func toResponse(id string, res *decision.Result, now time.Time) (*arbiterv1.DecideResponse, error) {
	resp := &arbiterv1.DecideResponse{
		DecisionId: id,
		Action:     arbiterv1.Action(res.Action),
		Reasons:    toReasons(res.Reasons),
		Policy:     toPolicyRef(res.Policy),
		DecidedAt:  ts(now),
	}
	switch res.Action {
	case decision.ActionRetry:
		r := res.Retry
		if r == nil {
			r = &decision.Retry{}
		}
		resp.Detail = &arbiterv1.DecideResponse_Retry{Retry: &arbiterv1.RetryAction{
			NotBefore: ts(r.NotBefore), Acquirer: r.Acquirer, Attempt: int32(r.Attempt),
		}}
	case decision.ActionMessage:
		m := res.Message
		if m == nil {
			m = &decision.Message{}
		}
		resp.Detail = &arbiterv1.DecideResponse_Message{Message: &arbiterv1.MessageAction{
			Channel: arbiterv1.Channel(m.Channel), TemplateId: m.TemplateID, Purpose: arbiterv1.Purpose(m.Purpose),
			SendAt: ts(m.SendAt), FallbackChannels: toChannels(m.FallbackChannels),
		}}
	case decision.ActionEscalate:
		e := res.Escalate
		if e == nil {
			e = &decision.Escalate{}
		}
		resp.Detail = &arbiterv1.DecideResponse_Escalate{Escalate: &arbiterv1.EscalateAction{
			Queue: e.Queue, Priority: int32(e.Priority), Context: e.Context,
		}}
	case decision.ActionSuppress:
		until := time.Time{}
		if res.Suppress != nil {
			until = res.Suppress.Until
		}
		resp.Detail = &arbiterv1.DecideResponse_Suppress{Suppress: &arbiterv1.SuppressAction{Until: ts(until)}}
	}
	if x := res.Experiment; x.ID != "" {
		resp.Experiment = &arbiterv1.ExperimentArm{Id: x.ID, Arm: x.Arm}
	}
	if res.Explanation != nil {
		x, err := toExplanation(res.Explanation)
		if err != nil {
			return nil, err
		}
		resp.Explanation = x
	}
	return resp, nil
}

// fromResponse rebuilds the engine's result from a stored answer, for RecordOutcome. Effects
// other than the reserved message slot are not stored and stay empty.
func fromResponse(resp *arbiterv1.DecideResponse) *decision.Result {
	res := &decision.Result{
		Action:     decision.Action(resp.GetAction()),
		Policy:     decision.PolicyRef{ID: resp.GetPolicy().GetId(), Version: resp.GetPolicy().GetVersion(), Digest: resp.GetPolicy().GetDigest()},
		Experiment: decision.ExperimentArm{ID: resp.GetExperiment().GetId(), Arm: resp.GetExperiment().GetArm()},
	}
	for _, r := range resp.GetReasons() {
		res.Reasons = append(res.Reasons, decision.Reason{Code: r.GetCode(), Message: r.GetMessage(), RuleID: r.GetRuleId()})
	}
	switch d := resp.GetDetail().(type) {
	case *arbiterv1.DecideResponse_Retry:
		res.Retry = &decision.Retry{NotBefore: fromTS(d.Retry.GetNotBefore()), Acquirer: d.Retry.GetAcquirer(), Attempt: int(d.Retry.GetAttempt())}
	case *arbiterv1.DecideResponse_Message:
		m := d.Message
		res.Message = &decision.Message{
			Channel: decision.Channel(m.GetChannel()), TemplateID: m.GetTemplateId(), Purpose: decision.Purpose(m.GetPurpose()),
			SendAt: fromTS(m.GetSendAt()), FallbackChannels: fromChannels(m.GetFallbackChannels()),
		}
		if !resp.GetDegraded() {
			res.Effects.Message = &decision.SentMessage{
				DecisionID: resp.GetDecisionId(), Channel: res.Message.Channel, Purpose: res.Message.Purpose,
				At: fromTS(resp.GetDecidedAt()),
			}
		}
	case *arbiterv1.DecideResponse_Escalate:
		res.Escalate = &decision.Escalate{Queue: d.Escalate.GetQueue(), Priority: int(d.Escalate.GetPriority()), Context: d.Escalate.GetContext()}
	case *arbiterv1.DecideResponse_Suppress:
		res.Suppress = &decision.Suppress{Until: fromTS(d.Suppress.GetUntil())}
	}
	return res
}

func toReasons(rs []decision.Reason) []*arbiterv1.Reason {
	if len(rs) == 0 {
		return nil
	}
	out := make([]*arbiterv1.Reason, len(rs))
	for i, r := range rs {
		out[i] = &arbiterv1.Reason{Code: r.Code, Message: r.Message, RuleId: r.RuleID}
	}
	return out
}

func toPolicyRef(p decision.PolicyRef) *arbiterv1.PolicyRef {
	return &arbiterv1.PolicyRef{Id: p.ID, Version: p.Version, Digest: p.Digest}
}

func toChannels(cs []decision.Channel) []arbiterv1.Channel {
	if len(cs) == 0 {
		return nil
	}
	out := make([]arbiterv1.Channel, len(cs))
	for i, c := range cs {
		out[i] = arbiterv1.Channel(c)
	}
	return out
}

func fromChannels(cs []arbiterv1.Channel) []decision.Channel {
	if len(cs) == 0 {
		return nil
	}
	out := make([]decision.Channel, len(cs))
	for i, c := range cs {
		out[i] = decision.Channel(c)
	}
	return out
}

func toPurposes(s decision.PurposeSet) []arbiterv1.Purpose {
	var out []arbiterv1.Purpose
	for p := decision.PurposeService; p <= decision.PurposeSecurity; p++ {
		if s.Has(p) {
			out = append(out, arbiterv1.Purpose(p))
		}
	}
	return out
}

// toValues converts JSON-compatible Go values (bool, float64, string, nil, []any,
// map[string]any and Go numbers) to protobuf values.
func toValues(m map[string]any) (map[string]*structpb.Value, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]*structpb.Value, len(m))
	for k, v := range m {
		pv, err := structpb.NewValue(v)
		if err != nil {
			return nil, fmt.Errorf("feature %q: %w", k, err)
		}
		out[k] = pv
	}
	return out, nil
}

// fromValues converts protobuf values to JSON-compatible Go values; a null value becomes nil.
func fromValues(m map[string]*structpb.Value) map[string]any {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v.AsInterface()
	}
	return out
}

func toExplanation(x *decision.Explanation) (*arbiterv1.Explanation, error) {
	out := &arbiterv1.Explanation{DeclineClass: x.DeclineClass, Summary: x.Summary}
	for _, r := range x.Rules {
		out.Rules = append(out.Rules, &arbiterv1.RuleTrace{RuleId: r.RuleID, Matched: r.Matched, Error: r.Error})
	}
	for _, g := range x.Guardrails {
		out.Guardrails = append(out.Guardrails, &arbiterv1.GuardrailCheck{
			Guardrail: g.Guardrail, RuleId: g.RuleID, Verdict: g.Verdict, ReasonCode: g.ReasonCode, Detail: g.Detail,
		})
	}
	for _, c := range x.Candidates {
		out.Candidates = append(out.Candidates, &arbiterv1.CandidateTrace{
			RuleId: c.RuleID, Action: arbiterv1.Action(c.Action), Priority: int32(c.Priority), Outcome: c.Outcome,
			Why: c.Why, Channel: arbiterv1.Channel(c.Channel), Queue: c.Queue, ReasonCodes: c.ReasonCodes,
		})
	}
	out.Counters = toCounters(x.Counters)
	f, err := toValues(x.Features)
	if err != nil {
		return nil, fmt.Errorf("explanation: %w", err)
	}
	out.Features = f
	return out, nil
}

func toCounters(cs []decision.CounterValue) []*arbiterv1.CounterValue {
	var out []*arbiterv1.CounterValue
	for _, c := range cs {
		out = append(out, &arbiterv1.CounterValue{
			Name: c.Name, Channel: arbiterv1.Channel(c.Channel), Purposes: toPurposes(c.Purposes),
			Window: durationpb.New(c.Window), Count: int64(c.Count), Limit: int64(c.Limit),
		})
	}
	return out
}

// ledgerKinds names the ledger entry kinds in a snapshot.
var ledgerKinds = map[decision.LedgerKind]string{decision.LedgerDecline: "decline", decision.LedgerRetry: "retry"}

func ledgerKindOf(s string) decision.LedgerKind {
	for k, name := range ledgerKinds {
		if name == s {
			return k
		}
	}
	return 0
}

// toSnapshot converts the state a decision read to its stored form; fromSnapshot is its
// exact inverse, so replaying a recorded decision sees the same state.
func toSnapshot(st *decision.State) (*arbiterv1.StateSnapshot, error) {
	f, err := toValues(st.Features)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	out := &arbiterv1.StateSnapshot{Features: f}
	if len(st.Messages) > 0 {
		out.Messages = make([]*arbiterv1.SentMessage, len(st.Messages))
		for i, m := range st.Messages {
			out.Messages[i] = toSentMessage(m)
		}
	}
	if n := len(st.Ledger); n > 0 {
		// A customer's ledger can hold hundreds of entries: three allocations for all of
		// them, not two per entry.
		out.Ledger = make([]*arbiterv1.LedgerEntry, n)
		entries := make([]arbiterv1.LedgerEntry, n)
		times := make([]timestamppb.Timestamp, n)
		for i, e := range st.Ledger {
			x := &entries[i]
			x.Kind, x.EventId, x.CardRef, x.MerchantId = ledgerKinds[e.Kind], e.EventID, e.CardRef, e.MerchantID
			x.AmountMinor, x.Currency, x.Initiator = e.AmountMinor, e.Currency, arbiterv1.Initiator(e.Initiator)
			x.Network, x.At = arbiterv1.CardNetwork(e.Network), tsIn(&times[i], e.At)
			out.Ledger[i] = x
		}
	}
	out.Stops = toStops(st.Stops)
	out.FailingChannels = toFailing(st.FailingChannels)
	out.Recent = toSummaries(st.Recent)
	if st.Narrowed {
		out.Narrowed = true
		out.LedgerDeclines_30D, out.RecentDecisions_24H = uint32(st.LedgerDeclines30d), uint32(st.RecentDecisions24h)
	}
	return out, nil
}

func fromSnapshot(s *arbiterv1.StateSnapshot) decision.State {
	st := decision.State{Features: fromValues(s.GetFeatures())}
	if ms := s.GetMessages(); len(ms) > 0 {
		st.Messages = make([]decision.SentMessage, len(ms))
		for i, m := range ms {
			st.Messages[i] = decision.SentMessage{
				DecisionID: m.GetDecisionId(), Channel: decision.Channel(m.GetChannel()),
				Purpose: decision.Purpose(m.GetPurpose()), At: fromTS(m.GetAt()),
			}
		}
	}
	if es := s.GetLedger(); len(es) > 0 {
		st.Ledger = make([]decision.LedgerEntry, len(es))
		for i, e := range es {
			st.Ledger[i] = decision.LedgerEntry{
				Kind: ledgerKindOf(e.GetKind()), EventID: e.GetEventId(), CardRef: e.GetCardRef(), MerchantID: e.GetMerchantId(),
				AmountMinor: e.GetAmountMinor(), Currency: e.GetCurrency(), Initiator: decision.Initiator(e.GetInitiator()),
				Network: decision.Network(e.GetNetwork()), At: fromTS(e.GetAt()),
			}
		}
	}
	if ss := s.GetStops(); len(ss) > 0 {
		st.Stops = make([]decision.RetryStop, len(ss))
		for i, x := range ss {
			st.Stops[i] = decision.RetryStop{CardRef: x.GetCardRef(), MerchantID: x.GetMerchantId(), Until: fromTS(x.GetUntil()), ReasonCode: x.GetReasonCode()}
		}
	}
	if fs := s.GetFailingChannels(); len(fs) > 0 {
		st.FailingChannels = make([]decision.ChannelFailure, len(fs))
		for i, f := range fs {
			st.FailingChannels[i] = decision.ChannelFailure{Channel: decision.Channel(f.GetChannel()), Until: fromTS(f.GetUntil())}
		}
	}
	if rs := s.GetRecent(); len(rs) > 0 {
		st.Recent = make([]decision.DecisionSummary, len(rs))
		for i, r := range rs {
			st.Recent[i] = decision.DecisionSummary{
				DecisionID: r.GetDecisionId(), EventID: r.GetEventId(), EventType: decision.EventType(r.GetEventType()),
				Action: decision.Action(r.GetAction()), ReasonCodes: r.GetReasonCodes(), DecidedAt: fromTS(r.GetDecidedAt()),
			}
		}
	}
	if s.GetNarrowed() {
		st.Narrowed = true
		st.LedgerDeclines30d, st.RecentDecisions24h = int(s.GetLedgerDeclines_30D()), int(s.GetRecentDecisions_24H())
	}
	return st
}

func toSentMessage(m decision.SentMessage) *arbiterv1.SentMessage {
	return &arbiterv1.SentMessage{
		DecisionId: m.DecisionID, Channel: arbiterv1.Channel(m.Channel), Purpose: arbiterv1.Purpose(m.Purpose), At: ts(m.At),
	}
}

func toStops(ss []decision.RetryStop) []*arbiterv1.RetryStop {
	if len(ss) == 0 {
		return nil
	}
	out := make([]*arbiterv1.RetryStop, len(ss))
	for i, x := range ss {
		out[i] = &arbiterv1.RetryStop{CardRef: x.CardRef, MerchantId: x.MerchantID, Until: ts(x.Until), ReasonCode: x.ReasonCode}
	}
	return out
}

func toFailing(fs []decision.ChannelFailure) []*arbiterv1.ChannelFailure {
	if len(fs) == 0 {
		return nil
	}
	out := make([]*arbiterv1.ChannelFailure, len(fs))
	for i, f := range fs {
		out[i] = &arbiterv1.ChannelFailure{Channel: arbiterv1.Channel(f.Channel), Until: ts(f.Until)}
	}
	return out
}

func toSummaries(rs []decision.DecisionSummary) []*arbiterv1.DecisionSummary {
	if len(rs) == 0 {
		return nil
	}
	// Three allocations for the list, not two per summary: the summaries and their times
	// live in two arrays.
	out := make([]*arbiterv1.DecisionSummary, len(rs))
	msgs := make([]arbiterv1.DecisionSummary, len(rs))
	times := make([]timestamppb.Timestamp, len(rs))
	for i, r := range rs {
		m := &msgs[i]
		m.DecisionId, m.EventId, m.EventType = r.DecisionID, r.EventID, arbiterv1.EventType(r.EventType)
		m.Action, m.ReasonCodes = arbiterv1.Action(r.Action), r.ReasonCodes
		m.DecidedAt = tsIn(&times[i], r.DecidedAt)
		out[i] = m
	}
	return out
}

// inputFromRecord rebuilds the engine's input of a recorded decision: the request, the state
// it read and its decision time.
func inputFromRecord(rec *arbiterv1.DecisionRecord) decision.Input {
	var in decision.Input
	toInput(rec.GetRequest(), &in)
	in.State = fromSnapshot(rec.GetSnapshot())
	in.Now = fromTS(rec.GetResponse().GetDecidedAt())
	in.Degraded = rec.GetResponse().GetDegraded()
	return in
}
