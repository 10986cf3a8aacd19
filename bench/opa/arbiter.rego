# The default Arbiter policy's rules and arbitration (policies/default), in Rego, for the peer
# comparison. The guardrails are not here: Arbiter runs them in Go after the rules, so this
# peer does strictly less work per decision than Arbiter's Decide.
package arbiter

rank := {"ESCALATE": 4, "RETRY": 3, "MESSAGE": 2, "SUPPRESS": 1}

feature(name, def) := object.get(input.features, name, def)

attr(name) := object.get(object.get(input.event, "attributes", {}), name, "")

pay := object.get(input.event, "payment", {})

# Payment failures.
candidates contains {"rule": "payment-stop-order", "priority": 700, "action": "SUPPRESS", "order": 0} if {
	input.event.type == "PAYMENT_FAILED"
	pay.decline_code in {"R0", "R1", "R3"}
}

candidates contains {"rule": "payment-stop-order", "priority": 700, "action": "SUPPRESS", "order": 0} if {
	input.event.type == "PAYMENT_FAILED"
	pay.merchant_advice_code == "21"
}

candidates contains {"rule": "payment-suspected-fraud", "priority": 650, "action": "ESCALATE", "order": 1} if {
	input.event.type == "PAYMENT_FAILED"
	pay.decline_code == "59"
}

candidates contains {"rule": "payment-soft-retry", "priority": 500, "action": "RETRY", "order": 2} if {
	input.event.type == "PAYMENT_FAILED"
	pay.decline_class == "LATER"
}

candidates contains {"rule": "payment-generic-retry", "priority": 450, "action": "RETRY", "order": 3} if {
	input.event.type == "PAYMENT_FAILED"
	pay.decline_class == "GENERIC"
}

candidates contains {"rule": "payment-hard-decline", "priority": 400, "action": "MESSAGE", "order": 4} if {
	input.event.type == "PAYMENT_FAILED"
	pay.decline_class == "NEVER"
}

candidates contains {"rule": "payment-fix-data", "priority": 400, "action": "MESSAGE", "order": 5} if {
	input.event.type == "PAYMENT_FAILED"
	pay.decline_class == "FIX_DATA"
}

candidates contains {"rule": "payment-no-auto", "priority": 400, "action": "MESSAGE", "order": 6} if {
	input.event.type == "PAYMENT_FAILED"
	pay.decline_class == "NO_AUTO"
	pay.decline_code != "59"
}

candidates contains {"rule": "payment-retry-exhausted", "priority": 300, "action": "MESSAGE", "order": 7} if {
	input.event.type == "PAYMENT_FAILED"
	pay.decline_class in {"LATER", "GENERIC"}
}

candidates contains {"rule": "card-expiring-reminder", "priority": 200, "action": "MESSAGE", "order": 8} if {
	input.event.type == "CARD_EXPIRING"
}

candidates contains {"rule": "checkout-abandoned-reminder", "priority": 100, "action": "MESSAGE", "order": 9} if {
	input.event.type == "CHECKOUT_ABANDONED"
}

# Collections.
candidates contains {"rule": "collections-referral", "priority": 800, "action": "ESCALATE", "order": 10} if {
	input.event.type in {"INVOICE_OVERDUE", "PAYMENT_PLAN_MISSED"}
	feature("days_past_due", 0) >= 60
}

candidates contains {"rule": "plan-missed-again", "priority": 750, "action": "ESCALATE", "order": 11} if {
	input.event.type == "PAYMENT_PLAN_MISSED"
	feature("plans_missed", 0) >= 2
}

candidates contains {"rule": "overdue-plan-offer", "priority": 350, "action": "MESSAGE", "order": 12} if {
	input.event.type == "INVOICE_OVERDUE"
	feature("days_past_due", 0) >= 30
}

candidates contains {"rule": "plan-missed-reminder", "priority": 300, "action": "MESSAGE", "order": 13} if {
	input.event.type == "PAYMENT_PLAN_MISSED"
}

candidates contains {"rule": "overdue-reminder-sms", "priority": 200, "action": "MESSAGE", "order": 14} if {
	input.event.type == "INVOICE_OVERDUE"
	feature("days_past_due", 0) >= 8
}

candidates contains {"rule": "overdue-reminder-gentle", "priority": 100, "action": "MESSAGE", "order": 15} if {
	input.event.type == "INVOICE_OVERDUE"
}

# Inbound contact.
candidates contains {"rule": "inbound-fraud", "priority": 900, "action": "ESCALATE", "order": 16} if {
	input.event.type == "INBOUND_CONTACT"
	feature("fraud_hold", false) == true
}

candidates contains {"rule": "inbound-fraud", "priority": 900, "action": "ESCALATE", "order": 16} if {
	input.event.type == "INBOUND_CONTACT"
	attr("intent") == "fraud"
}

candidates contains {"rule": "inbound-hardship", "priority": 850, "action": "ESCALATE", "order": 17} if {
	input.event.type == "INBOUND_CONTACT"
	input.customer.vulnerable == true
}

candidates contains {"rule": "inbound-hardship", "priority": 850, "action": "ESCALATE", "order": 17} if {
	input.event.type == "INBOUND_CONTACT"
	feature("hardship", false) == true
}

candidates contains {"rule": "inbound-hardship", "priority": 850, "action": "ESCALATE", "order": 17} if {
	input.event.type == "INBOUND_CONTACT"
	feature("vulnerable", false) == true
}

candidates contains {"rule": "inbound-collections", "priority": 800, "action": "ESCALATE", "order": 18} if {
	input.event.type == "INBOUND_CONTACT"
	feature("days_past_due", 0) > 0
}

candidates contains {"rule": "inbound-payments-support", "priority": 700, "action": "ESCALATE", "order": 19} if {
	input.event.type == "INBOUND_CONTACT"
	input.recent.declines_30d > 0
}

candidates contains {"rule": "inbound-payments-support", "priority": 700, "action": "ESCALATE", "order": 19} if {
	input.event.type == "INBOUND_CONTACT"
	attr("intent") == "payment"
}

candidates contains {"rule": "inbound-general", "priority": 100, "action": "ESCALATE", "order": 20} if {
	input.event.type == "INBOUND_CONTACT"
}

# Security.
candidates contains {"rule": "fraud-flag-escalate", "priority": 1000, "action": "ESCALATE", "order": 21} if {
	input.event.type == "FRAUD_FLAG_RAISED"
}

candidates contains {"rule": "fraud-flag-cleared", "priority": 100, "action": "MESSAGE", "order": 22} if {
	input.event.type == "FRAUD_FLAG_CLEARED"
}

candidates contains {"rule": "risky-login-fraud-team", "priority": 900, "action": "ESCALATE", "order": 23} if {
	input.event.type == "RISKY_LOGIN"
	feature("risk_score", 0) >= 0.8
}

candidates contains {"rule": "risky-login-notice", "priority": 600, "action": "MESSAGE", "order": 24} if {
	input.event.type == "RISKY_LOGIN"
}

candidates contains {"rule": "unopened-email-next", "priority": 100, "action": "MESSAGE", "order": 25} if {
	input.event.type == "MESSAGE_UNOPENED"
	attr("channel") == "EMAIL"
}

candidates contains {"rule": "unopened-sms-next", "priority": 100, "action": "MESSAGE", "order": 26} if {
	input.event.type == "MESSAGE_UNOPENED"
	attr("channel") == "SMS"
}

candidates contains {"rule": "unopened-push-next", "priority": 100, "action": "MESSAGE", "order": 27} if {
	input.event.type == "MESSAGE_UNOPENED"
	attr("channel") in {"PUSH", "WHATSAPP", "CHAT"}
}

# Arbitration: priority, then action rank, then position in the bundle.
ranked := sort([[0 - c.priority, 0 - rank[c.action], c.order, c.rule] | some c in candidates])

winner := {"rule": ranked[0][3], "ranked": [r[3] | some r in ranked]} if count(ranked) > 0

default winner := {"rule": "", "ranked": []}
