package decision

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// This file is the seam between the policy engine and the guardrails: it decodes a bundle's
// `guardrails:` and `payments:` sections and reads the facts the guardrails work out.

func factsClass(f *facts) DeclineClass      { return f.class }
func factsLedger(f *facts) ledgerView       { return f.ledger }
func factsCounters(f *facts) []CounterValue { return f.counters }

func declineClassName(c DeclineClass) string { return c.String() }

// buildGuardrails decodes the guardrails and payments sections (either may be nil: defaults)
// strictly, so a misspelt or unknown parameter is an error rather than a silently ignored
// safety setting, and builds the guardrails.
func buildGuardrails(g, p *yaml.Node) (*guardrails, error) {
	var gc GuardrailConfig
	var pc PaymentConfig
	if err := decodeNodeStrict(g, &gc); err != nil {
		return nil, fmt.Errorf("guardrails: %s", yamlMsg(err))
	}
	if err := decodeNodeStrict(p, &pc); err != nil {
		return nil, fmt.Errorf("payments: %s", yamlMsg(err))
	}
	return newGuardrails(gc, pc)
}

// decodeNodeStrict decodes n into v rejecting unknown fields (yaml.Node.Decode has no strict
// mode, so the node is re-encoded and decoded with a strict decoder).
func decodeNodeStrict(n *yaml.Node, v any) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	return decodeStrict(bytes.NewBuffer(b).Bytes(), v)
}
