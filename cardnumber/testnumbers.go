package cardnumber

// TestNumbers are the networks' published test card numbers (Visa, Mastercard, Amex,
// Discover, JCB, UnionPay; 13 to 19 digits, plain and grouped), all passing the Luhn check: canaries for
// tests of code that must refuse card numbers. They are not real cards.
var TestNumbers = []string{
	"4111111111111111",    // Visa, 16
	"4111 1111 1111 1111", // spaces
	"4111-1111-1111-1111", // dashes
	"5555555555554444",    // Mastercard
	"378282246310005",     // Amex, 15
	"3782 822463 10005",   // Amex grouping
	"4222222222222",       // Visa, 13
	"6011000990139424",    // Discover
	"3530111333300000",    // JCB
	"6250941006528599",    // UnionPay
	"4000000000000000006", // 19 digits
}
