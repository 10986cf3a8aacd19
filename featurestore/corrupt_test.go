package featurestore_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/storetest"
)

// rawWrite is malformed data to plant: value is a string, a hash (map[string]string), a zset
// (map[string]float64) or a list ([]string); replace deletes the key first.
type rawWrite struct {
	key     string
	value   any
	replace bool
}

// corruption returns the raw write that plants c for customerID.
func corruption(customerID string, c storetest.Corruption, at time.Time) (rawWrite, error) {
	features, messages, ledger, stops := featurestore.CustomerKeysForTest(customerID)
	score := float64(at.UnixMilli())
	sep := featurestore.Sep
	switch c {
	case storetest.CorruptFeatureJSON:
		return rawWrite{key: features, value: map[string]string{"bad": "{not json"}}, nil
	case storetest.CorruptHugeFeature:
		return rawWrite{key: features, value: map[string]string{"huge": `"` + strings.Repeat("x", 1<<20) + `"`}}, nil
	case storetest.CorruptMessageMember:
		return rawWrite{key: messages, value: map[string]float64{"d" + sep + "1": score}}, nil
	case storetest.CorruptLedgerMember:
		m := strings.Join([]string{"1", "e", "c", "m", "12x", "EUR", "1", "1"}, sep)
		return rawWrite{key: ledger, value: map[string]float64{m: score}}, nil
	case storetest.CorruptMessagesType:
		return rawWrite{key: messages, value: "x", replace: true}, nil
	case storetest.CorruptFeaturesType:
		return rawWrite{key: features, value: []string{"x"}, replace: true}, nil
	case storetest.CorruptStopValue:
		return rawWrite{key: stops, value: map[string]string{"c" + sep: "soon" + sep + "R"}}, nil
	}
	return rawWrite{}, fmt.Errorf("unknown corruption %d", c)
}
