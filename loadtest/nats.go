package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Subjects and headers of the stream path (package stream, docs/streams.md). The load tester
// is a client: it knows the wire contract, not the server's code.
const (
	natsEventSubject     = "arbiter.events.loadtest"
	natsDecisionSubjects = "arbiter.decisions.>"
	natsHeaderEventID    = "Arbiter-Event-Id"
	natsHeaderCustomerID = "Arbiter-Customer-Id"
	natsHeaderAction     = "Arbiter-Action"
	natsHeaderDegraded   = "Arbiter-Degraded"
	natsHeaderDecisionID = "Arbiter-Decision-Id"
)

// ErrNoDecision is the error of a streamed event whose decision did not come out before the
// call's deadline.
var ErrNoDecision = errors.New("no decision on arbiter.decisions.> before the deadline")

// CheckNATSLoopback returns an error wrapping ErrNotLoopback unless every server of a NATS URL
// list (nats://host:port, comma-separated) is on loopback.
func CheckNATSLoopback(urls string) error {
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		host := u
		if p, err := url.Parse(u); err == nil && p.Host != "" {
			host = p.Host
		}
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, "4222")
		}
		if err := CheckLoopback(host); err != nil {
			return err
		}
	}
	return nil
}

// NATSTarget is the Target of the stream path: each call publishes a Decide request to
// arbiter.events.loadtest through JetStream (waiting for its acknowledgement, as a producer
// does) and waits for its decision on arbiter.decisions.>, matched by the event and customer id
// headers. Its latency runs from the publish to the decision's arrival. Create it with
// NewNATSTarget; Close it after the run.
type NATSTarget struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	mix *Mix
	sub *nats.Subscription

	mu      sync.Mutex
	waiting map[natsKey][]chan Reply
}

type natsKey struct{ customer, event string }

// NewNATSTarget connects to the loopback NATS server(s) urls and subscribes to the decisions.
func NewNATSTarget(urls string, mix *Mix) (*NATSTarget, error) {
	if err := CheckNATSLoopback(urls); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(urls, nats.Name("arbiter-loadtest"))
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	t := &NATSTarget{nc: nc, js: js, mix: mix, waiting: map[natsKey][]chan Reply{}}
	if t.sub, err = nc.Subscribe(natsDecisionSubjects, t.deliver); err != nil {
		nc.Close()
		return nil, fmt.Errorf("subscribe %s: %w", natsDecisionSubjects, err)
	}
	// A decision dropped as a slow consumer would count as an error of the server.
	if err := t.sub.SetPendingLimits(-1, -1); err != nil {
		nc.Close()
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	return t, nil
}

// Close ends the subscription and the connection.
func (t *NATSTarget) Close() { t.nc.Close() }

// deliver hands a decision to the calls waiting for its event.
func (t *NATSTarget) deliver(m *nats.Msg) {
	k := natsKey{m.Header.Get(natsHeaderCustomerID), m.Header.Get(natsHeaderEventID)}
	r := Reply{Action: strings.ToUpper(m.Header.Get(natsHeaderAction)), Degraded: m.Header.Get(natsHeaderDegraded) != "",
		EventID: k.event, DecisionID: m.Header.Get(natsHeaderDecisionID)}
	t.mu.Lock()
	ws := t.waiting[k]
	delete(t.waiting, k)
	t.mu.Unlock()
	for _, w := range ws {
		w <- r
	}
}

type natsCall struct {
	key  natsKey
	data []byte
	err  error
}

// Prepare builds and encodes mix's request i.
func (t *NATSTarget) Prepare(i uint64) any {
	req := t.mix.Request(i)
	data, err := proto.Marshal(req)
	return natsCall{key: natsKey{req.GetCustomer().GetId(), req.GetEvent().GetId()}, data: data, err: err}
}

// Call publishes the prepared event and waits for its decision until ctx is done.
func (t *NATSTarget) Call(ctx context.Context, req any) (Reply, error) {
	c := req.(natsCall)
	if c.err != nil {
		return Reply{}, c.err
	}
	w := make(chan Reply, 1)
	t.mu.Lock()
	t.waiting[c.key] = append(t.waiting[c.key], w)
	t.mu.Unlock()
	m := nats.NewMsg(natsEventSubject)
	m.Data = c.data
	m.Header.Set("Content-Type", "application/protobuf")
	if _, err := t.js.PublishMsg(ctx, m); err != nil {
		t.forget(c.key, w)
		return Reply{}, fmt.Errorf("publish: %w", err)
	}
	select {
	case r := <-w:
		return r, nil
	case <-ctx.Done():
		t.forget(c.key, w)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Reply{}, fmt.Errorf("%w: %w", ErrNoDecision, ctx.Err())
		}
		return Reply{}, ctx.Err()
	}
}

// forget removes waiter w of key.
func (t *NATSTarget) forget(key natsKey, w chan Reply) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws := t.waiting[key]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(t.waiting, key)
	} else {
		t.waiting[key] = ws
	}
}
