package guard_test

import (
	"fmt"

	"google.golang.org/grpc/status"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
)

func ExampleCheckCardNumbers() {
	req := &arbiterv1.DecideRequest{Event: &arbiterv1.Event{
		Id:         "evt-1",
		Attributes: map[string]string{"note": "customer read out 4111 1111 1111 1111"},
	}}
	err := guard.CheckCardNumbers(req)
	st := status.Convert(err)
	fmt.Println(st.Code())
	fmt.Println(st.Message())
	// Output:
	// InvalidArgument
	// invalid event.attributes["note"]: looks like a card number (13 to 19 digits passing the Luhn check); send a card_ref (network token or payment account reference) instead
}
