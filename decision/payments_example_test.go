package decision_test

import (
	"fmt"

	"github.com/arbiter-dev/arbiter/decision"
)

func ExampleClassify() {
	// Insufficient funds: a soft decline, retried later within the network budget.
	fmt.Println(decision.Classify(decision.NetworkVisa, "51", "", decision.InitiatorMerchant))
	// Mastercard advice 03 (do not try again) overrides the code.
	fmt.Println(decision.Classify(decision.NetworkMastercard, "51", "03", decision.InitiatorMerchant))
	// Authentication required: fixable only while the customer is in session.
	fmt.Println(decision.Classify(decision.NetworkVisa, "1A", "", decision.InitiatorCustomer))
	fmt.Println(decision.Classify(decision.NetworkVisa, "1A", "", decision.InitiatorMerchant))
	// A code the table does not know is Visa category 4, generic.
	fmt.Println(decision.Classify(decision.NetworkVisa, "Q9", "", decision.InitiatorMerchant))
	// Output:
	// LATER
	// NEVER
	// FIX_DATA
	// NO_AUTO
	// GENERIC
}
