package featurestore

// CustomerKeysForTest returns the features, messages, ledger and stops keys of a customer.
func CustomerKeysForTest(customerID string) (features, messages, ledger, stops string) {
	k := keysOf(customerID)
	return k.features, k.messages, k.ledger, k.stops
}

// DecisionKeyForTest returns the key of a decision record, "" for a malformed id.
func DecisionKeyForTest(decisionID string) string {
	b, err := bucketOfDecisionID(decisionID)
	if err != nil {
		return ""
	}
	return key(keyDecision, b, "", decisionID)
}

// SetRawForTest writes v at key, as Redis would hold it: a string, a hash
// (map[string]string, merged), a zset (map[string]float64, merged) or a list ([]string).
// With replace, the key is deleted first.
func (m *Memory) SetRawForTest(key string, v any, replace bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if replace {
		delete(m.keys, key)
	}
	switch v := v.(type) {
	case string:
		m.keys[key] = &memValue{kind: memString, str: v}
	case map[string]string:
		h := m.put(key, memHash)
		for f, x := range v {
			h.hash[f] = x
		}
	case map[string]float64:
		z := m.put(key, memZset)
		for mem, s := range v {
			z.zset[mem] = int64(s)
		}
	case []string:
		m.keys[key] = &memValue{kind: memList, list: v}
	}
}

// Sep is the field separator of stored members.
const Sep = sep

// BenchCommit, BenchFeatures and CPUTimes serve the benchmarks of package featurestore_test.
var (
	BenchCommit   = benchCommit
	BenchFeatures = benchFeatures
	CPUTimes      = cpuTimes
)
