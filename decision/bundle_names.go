package decision

import "strings"

// The names below are how bundles, test cases and CEL expressions spell the enumerations:
// the protobuf names without their prefix ("PAYMENT_FAILED", "SMS", "VISA"). The tables are
// read-only.

var bundleEventNames = [eventTypeCount]string{
	"", "PAYMENT_FAILED", "CARD_EXPIRING", "INVOICE_OVERDUE", "PAYMENT_PLAN_MISSED",
	"CHECKOUT_ABANDONED", "RISKY_LOGIN", "FRAUD_FLAG_RAISED", "FRAUD_FLAG_CLEARED",
	"MESSAGE_UNOPENED", "INBOUND_CONTACT",
}

var bundleChannelNames = [channelCount]string{"", "EMAIL", "SMS", "PUSH", "CHAT", "IVR", "WHATSAPP"}

var bundlePurposeNames = [purposeCount]string{"", "SERVICE", "COLLECTIONS", "MARKETING", "SECURITY"}

var bundleActionNames = [...]string{"", "RETRY", "MESSAGE", "ESCALATE", "SUPPRESS"}

var bundleNetworkNames = [...]string{"", "VISA", "MASTERCARD", "AMEX", "OTHER"}

var bundleInitiatorNames = [...]string{"", "CUSTOMER", "MERCHANT"}

// bundleLookupName returns the index of name (case-insensitive, optional prefix) in names, or 0.
func bundleLookupName(names []string, prefix, name string) int {
	name = strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), prefix)
	if name == "" {
		return 0
	}
	for i, n := range names {
		if i > 0 && n == name {
			return i
		}
	}
	return 0
}

func bundleEventTypeName(t EventType) string {
	if int(t) < len(bundleEventNames) {
		return bundleEventNames[t]
	}
	return ""
}

func bundleChannelName(c Channel) string {
	if int(c) < len(bundleChannelNames) {
		return bundleChannelNames[c]
	}
	return ""
}

func bundlePurposeName(p Purpose) string {
	if int(p) < len(bundlePurposeNames) {
		return bundlePurposeNames[p]
	}
	return ""
}

func bundleActionName(a Action) string {
	if int(a) < len(bundleActionNames) {
		return bundleActionNames[a]
	}
	return ""
}

func bundleNetworkName(n Network) string {
	if int(n) < len(bundleNetworkNames) {
		return bundleNetworkNames[n]
	}
	return ""
}

func bundleInitiatorName(i Initiator) string {
	if int(i) < len(bundleInitiatorNames) {
		return bundleInitiatorNames[i]
	}
	return ""
}

func bundleParseEventType(s string) EventType {
	return EventType(bundleLookupName(bundleEventNames[:], "EVENT_TYPE_", s))
}
func bundleParseChannel(s string) Channel {
	return Channel(bundleLookupName(bundleChannelNames[:], "CHANNEL_", s))
}
func bundleParsePurpose(s string) Purpose {
	return Purpose(bundleLookupName(bundlePurposeNames[:], "PURPOSE_", s))
}
func bundleParseAction(s string) Action {
	return Action(bundleLookupName(bundleActionNames[:], "ACTION_", s))
}
func bundleParseNetwork(s string) Network {
	return Network(bundleLookupName(bundleNetworkNames[:], "CARD_NETWORK_", s))
}
func bundleParseInitiator(s string) Initiator {
	return Initiator(bundleLookupName(bundleInitiatorNames[:], "INITIATOR_", s))
}

// bundleActionRank orders actions for the tie-break: ESCALATE > RETRY > MESSAGE > SUPPRESS.
func bundleActionRank(a Action) int {
	switch a {
	case ActionEscalate:
		return 4
	case ActionRetry:
		return 3
	case ActionMessage:
		return 2
	case ActionSuppress:
		return 1
	}
	return 0
}
