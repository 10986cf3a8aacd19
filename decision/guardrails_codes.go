package decision

// Stable reason codes added by the guardrails and the payment rules. docs/reason-codes.md
// explains each; the strings never change once released.
const (
	// CodeSoftDecline: the decline is retryable (class LATER or GENERIC).
	CodeSoftDecline = "SOFT_DECLINE"
	// CodeHardDecline: the decline is class NEVER; the credential is never retried.
	CodeHardDecline = "HARD_DECLINE"
	// CodeFixDataDecline: the decline is class FIX_DATA; retry only after the data changes.
	CodeFixDataDecline = "FIX_DATA_DECLINE"
	// CodeNoAutoDecline: the decline is class NO_AUTO; message or escalate, never auto-retry.
	CodeNoAutoDecline = "NO_AUTO_DECLINE"
	// CodeNoAutoRetry: a RETRY was blocked because the decline class forbids automatic retries.
	CodeNoAutoRetry = "NO_AUTO_RETRY"
	// CodeNetworkRetryLimit: a RETRY was blocked by a card-network retry limit.
	CodeNetworkRetryLimit = "NETWORK_RETRY_LIMIT"
	// CodeRetryLimit: a RETRY was blocked by the policy's business retry limit.
	CodeRetryLimit = "RETRY_LIMIT"
	// CodeMACDoNotRetry: Mastercard advice 03 or 21, now or in the last 30 days: no retry.
	CodeMACDoNotRetry = "MAC_DO_NOT_RETRY"
	// CodeMACRetryAfter: a Mastercard advice code set the earliest retry time.
	CodeMACRetryAfter = "MAC_RETRY_AFTER"
	// CodeRecurringEnded: a stop-payment code (R0, R1, R3) ended the recurring sequence for
	// the credential and merchant.
	CodeRecurringEnded = "RECURRING_ENDED"
	// CodeLedgerFull: the customer's retry ledger outgrew the store's bound (featurestore's
	// LedgerCap entries in 30 days), so the card's counts are incomplete; no RETRY of the card
	// until its dropped entries would have left the 30-day window.
	CodeLedgerFull = "RETRY_LEDGER_FULL"
	// CodePaydayTargeted: an insufficient-funds retry was aimed just after the next payday.
	CodePaydayTargeted = "PAYDAY_TARGETED"
	// CodeAcquirerSwitch: after an issuer or switch failure the retry goes through another
	// acquirer.
	CodeAcquirerSwitch = "ACQUIRER_SWITCH"
	// CodeRetryNotApplicable: a RETRY was proposed for an event that is not a payment failure.
	CodeRetryNotApplicable = "RETRY_NOT_APPLICABLE"

	// CodeOptedOut: the customer opted out; only SECURITY messages are sent.
	CodeOptedOut = "OPTED_OUT"
	// CodeNoConsent: no channel has consent for the message's purpose.
	CodeNoConsent = "NO_CONSENT"
	// CodeQuietHours: the message was deferred to the end of the customer's quiet hours.
	CodeQuietHours = "QUIET_HOURS"
	// CodeFrequencyCap: every permitted channel is at a frequency cap.
	CodeFrequencyCap = "FREQUENCY_CAP"
	// CodeFraudHold: a fraud hold blocks MARKETING and COLLECTIONS messages and retries.
	CodeFraudHold = "FRAUD_HOLD"
	// CodeVulnerableCustomer: a vulnerable customer gets a human, not an automated action.
	CodeVulnerableCustomer = "VULNERABLE_CUSTOMER"
	// CodeChannelFallback: the preferred channel was skipped (no consent, capped or failing)
	// and a later channel was used.
	CodeChannelFallback = "CHANNEL_FALLBACK"
	// CodeChannelFailing: every permitted channel is failing after delivery failures.
	CodeChannelFailing = "CHANNEL_FAILING"
	// CodeTimezoneUnknown: the customer's timezone is unknown or invalid; no message now.
	CodeTimezoneUnknown = "TIMEZONE_UNKNOWN"
	// CodeStoreUnavailable: the customer's state could not be read; no MESSAGE and no RETRY.
	CodeStoreUnavailable = "STORE_UNAVAILABLE"
)

// Codes of DecisionService/Confirm, which re-checks a decision right before it is executed.
const (
	// CodeStillValid: nothing that stops the decision has changed since it was made.
	CodeStillValid = "STILL_VALID"
	// CodeAlreadyPaid: the payment was made or the retry approved since the decision.
	CodeAlreadyPaid = "ALREADY_PAID"
	// CodeSuperseded: a newer decision for the same customer and event type replaced it.
	CodeSuperseded = "SUPERSEDED"
	// CodeExpired: more than ConfirmValidity has passed since its send time or not_before.
	CodeExpired = "EXPIRED"
	// CodeRetryStopped: a hard retry stop is now in force for the credential.
	CodeRetryStopped = "RETRY_STOPPED"
)
