package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// daytimeZone returns a time zone where it is between 10:00 and 17:00 at now, so that the
// default policy's quiet hours (21:00 to 08:00) do not block messages whenever the test runs.
func daytimeZone(t *testing.T, now time.Time) string {
	t.Helper()
	for _, name := range []string{"Europe/London", "Asia/Dubai", "Asia/Kolkata", "Asia/Tokyo",
		"Pacific/Auckland", "Pacific/Honolulu", "America/Los_Angeles", "America/New_York"} {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		if h := now.In(loc).Hour(); h >= 10 && h < 17 {
			return name
		}
	}
	t.Fatalf("no listed time zone is between 10:00 and 17:00 at %v", now)
	return ""
}

// TestTwoProcessesShareRedis runs two "arbiter serve" processes on one Redis and sends one
// customer's events to both at once, from eight callers: overdue invoices (MESSAGE, capped at
// two a day by the default policy) and soft card declines (RETRY, counted in the ledger). The
// caps and the ledger stay exact across processes: exactly two MESSAGE answers and two
// reserved messages, and as many retries in the ledger as RETRY answers.
func TestTwoProcessesShareRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	addr := redistest.Start(t)
	url := "redis://" + addr + "?read_timeout=3s&write_timeout=3s"
	var clients []arbiterv1.DecisionServiceClient
	for range 2 {
		// A generous store budget: this test is about exactness, not about degrading.
		_, conn := startServeProcess(t, url, "--store-budget", "2s", "--store-budget-min", "0")
		clients = append(clients, arbiterv1.NewDecisionServiceClient(conn))
	}
	const (
		cust      = "two-procs-cust"
		workers   = 8
		perWorker = 8
	)
	zone := daytimeZone(t, time.Now())
	request := func(id string, decline bool) *arbiterv1.DecideRequest {
		req := &arbiterv1.DecideRequest{
			Event: &arbiterv1.Event{Id: id, Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
			Customer: &arbiterv1.Customer{
				Id: cust, Timezone: zone,
				Consents: []*arbiterv1.Consent{
					{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true},
				},
				PreferredChannels: []arbiterv1.Channel{arbiterv1.Channel_CHANNEL_EMAIL},
			},
		}
		if decline {
			req.Event.Type = arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED
			req.Event.Payment = &arbiterv1.PaymentFailure{
				DeclineCode: "51", Network: arbiterv1.CardNetwork_CARD_NETWORK_VISA, AmountMinor: 1999,
				Currency: "GBP", Acquirer: "acq-a", CardRef: "tok_two_procs", Initiator: arbiterv1.Initiator_INITIATOR_MERCHANT,
				MerchantId: "m-1",
			}
		}
		return req
	}

	var (
		mu                sync.Mutex
		messages, retries int
		reasons           = map[string]int{}
		wg                sync.WaitGroup
	)
	for i := range workers {
		wg.Go(func() {
			dc := clients[i%2]
			for j := range perWorker {
				req := request(fmt.Sprintf("tp-%d-%d", i, j), j%2 == 1)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				resp, err := dc.Decide(ctx, req)
				cancel()
				if err != nil {
					t.Errorf("Decide(%s) = %v", req.GetEvent().GetId(), err)
					continue
				}
				if resp.GetDegraded() {
					t.Errorf("Decide(%s) = degraded, want an answer from the store", req.GetEvent().GetId())
				}
				mu.Lock()
				switch resp.GetAction() {
				case arbiterv1.Action_ACTION_MESSAGE:
					messages++
				case arbiterv1.Action_ACTION_RETRY:
					retries++
				}
				for _, r := range resp.GetReasons() {
					reasons[r.GetCode()]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	rdb, err := featurestore.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	store := featurestore.NewRedis(rdb)
	defer store.Close()
	st, err := store.State(t.Context(), cust, time.Now())
	if err != nil {
		t.Fatalf("State(%s) = %v", cust, err)
	}
	if messages != 2 || len(st.Messages) != 2 {
		t.Errorf("MESSAGE answers = %d, reserved messages = %d; want 2 and 2 (the daily cap); reasons %v", messages, len(st.Messages), reasons)
	}
	ledgerRetries := 0
	for _, l := range st.Ledger {
		if l.Kind == decision.LedgerRetry {
			ledgerRetries++
		}
	}
	if retries == 0 || retries != ledgerRetries {
		t.Errorf("RETRY answers = %d, retries in the ledger = %d; want equal and at least 1; reasons %v", retries, ledgerRetries, reasons)
	}
	t.Logf("%d events from %d callers on 2 processes (customer zone %s): %d MESSAGE, %d RETRY, reasons %v",
		workers*perWorker, workers, zone, messages, retries, reasons)
}
