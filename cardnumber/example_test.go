package cardnumber_test

import (
	"fmt"

	"github.com/arbiter-dev/arbiter/cardnumber"
)

func ExampleContains() {
	for _, s := range []string{
		"4111-1111-1111-1111",                  // a test Visa number
		"4111-1111-1111-1112",                  // fails the Luhn check
		"12244734-2957-4ff2-a099-be752aa21a56", // a UUID
	} {
		fmt.Println(cardnumber.Contains(s))
	}
	// Output:
	// true
	// false
	// false
}
