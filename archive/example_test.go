package archive_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/arbiter-dev/arbiter/archive"
)

// A relay copies a batch of decisions from the Redis outbox into the archive and trims the
// outbox only once Append returned nil. Appending is idempotent, so the batch re-sent after a
// crash between the two steps is not archived twice.
func ExampleArchive_Append() {
	ctx := context.Background()
	// exampleDSN names an empty database, such as postgres://arbiter@db:5432/arbiter.
	a, err := archive.Open(ctx, exampleDSN)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()

	decidedAt := time.Now().UTC()
	batch := []archive.Record{{
		DecisionID: "3f-01938a7c-5b1e-7c3d-9a2b-4c5d6e7f8091", CustomerID: "cust-1",
		EventID: "invoice-overdue-1", EventType: "invoice_overdue", Action: "message",
		Reasons:  []string{"ELIGIBLE"},
		PolicyID: "collections", PolicyVersion: "v12", PolicyDigest: "sha256:9c1e",
		DecidedAt: decidedAt, Body: []byte("encoded arbiterv1.DecisionRecord"),
	}}
	n, err := a.Append(ctx, batch)
	fmt.Println("inserted:", n, err)
	n, err = a.Append(ctx, batch) // the same batch again, as after a relay crash
	fmt.Println("inserted again:", n, err)

	r, err := a.Get(ctx, "3f-01938a7c-5b1e-7c3d-9a2b-4c5d6e7f8091")
	fmt.Println(r.CustomerID, r.Action, r.Reasons, string(r.Body), err)
	_, err = a.Get(ctx, "no-such-decision")
	fmt.Println("unknown id not found:", errors.Is(err, archive.ErrNotFound))
	// Output:
	// inserted: 1 <nil>
	// inserted again: 0 <nil>
	// cust-1 message [ELIGIBLE] encoded arbiterv1.DecisionRecord <nil>
	// unknown id not found: true
}
