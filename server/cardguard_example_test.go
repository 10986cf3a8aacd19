package server_test

import (
	"fmt"

	"google.golang.org/grpc/status"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/server"
)

func ExampleCheckCardNumbers() {
	req := &arbiterv1.DecideRequest{Event: &arbiterv1.Event{
		Id:         "evt-1",
		Attributes: map[string]string{"note": "customer read out 4111 1111 1111 1111"},
	}}
	err := server.CheckCardNumbers(req)
	st := status.Convert(err)
	fmt.Println(st.Code())
	fmt.Println(st.Message())
	// Output:
	// InvalidArgument
	// event.attributes["note"]: looks like a card number (13 to 19 digits passing the Luhn check); send a card_ref (network token or payment account reference) instead
}

func ExampleContainsCardNumber() {
	for _, s := range []string{
		"4111-1111-1111-1111",                  // a test Visa number
		"4111-1111-1111-1112",                  // fails the Luhn check
		"12244734-2957-4ff2-a099-be752aa21a56", // a UUID
	} {
		fmt.Println(server.ContainsCardNumber(s))
	}
	// Output:
	// true
	// false
	// false
}
