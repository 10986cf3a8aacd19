package featurestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestKeySchema(t *testing.T) {
	const cust = "cust-42"
	b := bucketOf(cust)
	tag := fmt.Sprintf("{b:%02x}", uint8(b))
	tests := []struct {
		kind keyKind
		id   string
		want string
	}{
		{keyFeatures, "", tag + ":c:cust-42:f"},
		{keyMessages, "", tag + ":c:cust-42:m"},
		{keyLedger, "", tag + ":c:cust-42:l"},
		{keyStops, "", tag + ":c:cust-42:s"},
		{keyFailing, "", tag + ":c:cust-42:x"},
		{keyRecent, "", tag + ":c:cust-42:r"},
		{keyVersion, "", tag + ":c:cust-42:v"},
		{keyEvent, "ev-1", tag + ":c:cust-42:e:ev-1"},
		{keyDecision, "d1", tag + ":d:d1"},
		{keyOutcomes, "d1", tag + ":o:d1"},
		{keyAudit, "", tag + ":audit"},
		{keyErased, "", tag + ":erased"},
		{keyDecisionPrefix, "", tag + ":d:"},
	}
	for _, tt := range tests {
		if got := key(tt.kind, b, cust, tt.id); got != tt.want {
			t.Errorf("key(%d, %s, %q) = %q, want %q", tt.kind, tag, tt.id, got, tt.want)
		}
	}
	// keysOf builds the customer's keys in one string; each must be the schema's.
	for _, c := range []string{cust, "", "a:b%c"} {
		k := keysOf(c)
		b := bucketOf(c)
		for kind, got := range map[keyKind]string{keyFeatures: k.features, keyMessages: k.messages,
			keyLedger: k.ledger, keyStops: k.stops, keyFailing: k.failing, keyRecent: k.recent, keyVersion: k.version} {
			if want := key(kind, b, c, ""); got != want || k.bucket != b {
				t.Errorf("keysOf(%q): kind %d = %q, want %q", c, kind, got, want)
			}
		}
	}
	// ShardOf finds a bucket's slot from its tag alone.
	for b := range 256 {
		if got, want := bucketTags[b], fmt.Sprintf("{b:%02x}", b); got != want || !strings.HasPrefix(key(keyAudit, bucket(b), "", ""), got) {
			t.Errorf("bucketTags[%d] = %q, want %q, the prefix of the bucket's keys", b, got, want)
		}
	}
}

// TestKeysDoNotCollide checks that customer ids holding the key separator cannot reach
// another customer's keys.
func TestKeysDoNotCollide(t *testing.T) {
	kinds := []keyKind{keyFeatures, keyMessages, keyLedger, keyStops, keyFailing, keyRecent, keyVersion}
	seen := map[string]string{}
	add := func(k, who string) {
		if prev, ok := seen[k]; ok && prev != who {
			t.Errorf("key %q is both %s and %s", k, prev, who)
		}
		seen[k] = who
	}
	customers := []string{"x", "x:e:y", "x:e", "x%3Ae%3Ay", "x%3A", "x:", "x%", "%", ":", "x:m", "x:e:y:m"}
	for _, c := range customers {
		for _, kind := range kinds {
			add(key(kind, 0, c, ""), fmt.Sprintf("customer %q kind %d", c, kind))
		}
		for _, ev := range []string{"y:m", "m", "y", ":", "e:y:m"} {
			add(key(keyEvent, 0, c, ev), fmt.Sprintf("customer %q event %q", c, ev))
		}
	}
	if got, want := key(keyMessages, 0, "a:b%c", ""), "{b:00}:c:a%3Ab%25c:m"; got != want {
		t.Errorf("key(messages, a:b%%c) = %q, want %q", got, want)
	}
}

func TestBucketOf(t *testing.T) {
	for _, id := range []string{"", "a", "cust-42", "ÄÖÜ", strings.Repeat("x", 300)} {
		h := fnv.New32a()
		h.Write([]byte(id))
		if got, want := bucketOf(id), bucket(h.Sum32()%256); got != want {
			t.Errorf("bucketOf(%q) = %d, want %d (fnv-1a-32 %% 256)", id, got, want)
		}
	}
}

var decisionIDForm = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewDecisionID(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		cust := fmt.Sprint("c", i%7)
		id := NewDecisionID(cust, now.Add(time.Duration(i)*time.Millisecond))
		if !decisionIDForm.MatchString(id) {
			t.Fatalf("NewDecisionID(%s) = %q, want the form XX-<uuidv7>", cust, id)
		}
		b, err := bucketOfDecisionID(id)
		if err != nil || b != bucketOf(cust) {
			t.Fatalf("bucketOfDecisionID(%q) = %d, %v, want %d, nil", id, b, err, bucketOf(cust))
		}
		if seen[id] {
			t.Fatalf("NewDecisionID repeated %q", id)
		}
		seen[id] = true
		// Within a bucket, ids sort by time.
		if i%7 == 0 {
			if id[3:] <= prev {
				t.Errorf("NewDecisionID at +%dms = %q, not after %q", i, id, prev)
			}
			prev = id[3:]
		}
	}
}

func TestBucketOfDecisionIDMalformed(t *testing.T) {
	valid := NewDecisionID("c", time.Now())
	for _, id := range []string{
		"", "x", valid[:38], valid + "0", "0G" + valid[2:], "AB" + valid[2:], valid[:2] + "_" + valid[3:],
		valid[:11] + "x" + valid[12:], valid[:12] + "g" + valid[13:], "\x00" + valid[1:],
		strings.Repeat("-", 39), "../../../../etc/passwd-aaaaaaaaaaaaaaaaa",
	} {
		if _, err := bucketOfDecisionID(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("bucketOfDecisionID(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func FuzzBucketOfDecisionID(f *testing.F) {
	f.Add(NewDecisionID("c", time.Unix(0, 0)))
	f.Add("")
	f.Add("zz-")
	f.Fuzz(func(t *testing.T, id string) {
		b, err := bucketOfDecisionID(id)
		if err == nil && (len(id) != decisionIDLen || fmt.Sprintf("%02x", uint8(b)) != id[:2]) {
			t.Errorf("bucketOfDecisionID(%q) = %d, nil for a malformed id", id, b)
		}
	})
}

// FuzzDecode feeds arbitrary stored values to the decoders: they must return a value or
// ErrCorrupt, never panic.
func FuzzDecode(f *testing.F) {
	f.Add("d\x1f1\x1f2", "1700000000000", `{"a":1}`, "1\x1fe\x1fc\x1fm\x1f100\x1fEUR\x1f1\x1f1")
	f.Add("", "nan", "{", "\x1f\x1f")
	f.Add("a\x1fb", "1e300", `"x"`, "1\x1fe")
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, member, score, value, ledger string) {
		k := keysOf("fuzz")
		r := rawState{
			features: []string{"f", value},
			messages: []string{member, score},
			ledger:   []string{ledger, score},
			stops:    []string{member, value},
			failing:  []string{score, value},
			recent:   []string{member, ledger},
		}
		if _, err := r.decode(&k, now); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode() = %v, want nil or ErrCorrupt", err)
		}
		if _, err := decodeOutcomes("o", []string{score, member}); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeOutcomes() = %v, want nil or ErrCorrupt", err)
		}
	})
}

func FuzzFastJSON(f *testing.F) {
	f.Add("plain", 1.5, int64(3), true)
	f.Add("with \"quote\" and \\ and \x00 and é", 1e21, int64(-1), false)
	f.Add("<html>", 1e-7, int64(1<<62), false)
	f.Fuzz(func(t *testing.T, s string, x float64, n int64, b bool) {
		for _, v := range []any{s, x, n, b, int(n)} {
			fast, ok := fastJSON(v)
			if !ok {
				continue
			}
			var got, want any
			if err := json.Unmarshal([]byte(fast), &got); err != nil {
				t.Fatalf("fastJSON(%#v) = %q, not JSON: %v", v, fast, err)
			}
			std, _ := json.Marshal(v)
			json.Unmarshal(std, &want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("fastJSON(%#v) decodes to %#v, encoding/json's to %#v", v, got, want)
			}
		}
	})
}

// FuzzFastDecodeJSON: whatever fastDecodeJSON accepts, encoding/json decodes to the same value.
func FuzzFastDecodeJSON(f *testing.F) {
	for _, s := range []string{"true", "null", `"plain"`, `"es\"c"`, "-0.5e+3", "01", "1.", ".5", "1e", "+1", "0x10", "1_0", "Inf", "1e400", `"\u00e9"`, `"é"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := fastDecodeJSON(s)
		if !ok {
			return
		}
		var std any
		if err := json.Unmarshal([]byte(s), &std); err != nil {
			t.Fatalf("fastDecodeJSON(%q) = %#v, but encoding/json refuses it: %v", s, fast, err)
		}
		if !reflect.DeepEqual(fast, std) {
			t.Errorf("fastDecodeJSON(%q) = %#v, encoding/json = %#v", s, fast, std)
		}
	})
}

// TestFastDecodeJSONCommonValues: the values fastJSON writes take the fast path back.
func TestFastDecodeJSONCommonValues(t *testing.T) {
	for _, v := range []any{true, false, "retail", "Europe/London", 22.0, -0.093, 1e21, 1700000000000.0} {
		enc, ok := fastJSON(v)
		if !ok {
			t.Fatalf("fastJSON(%#v) not ok", v)
		}
		if got, ok := fastDecodeJSON(enc); !ok || got != v {
			t.Errorf("fastDecodeJSON(%q) = %#v, %v; want %#v, true", enc, got, ok, v)
		}
	}
}

// TestHotPathAllocs guards the allocations of the helpers every Decide calls.
func TestHotPathAllocs(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		fn   func()
		max  float64
	}{
		{"NewDecisionID", func() { _ = NewDecisionID("cust-42", now) }, 1},
		{"bucketOfDecisionID", func() { _, _ = bucketOfDecisionID("3f-0190f5a2-7c1e-7d4b-9a51-0c3e5b7d9f21") }, 0},
		{"keysOf", func() { _ = keysOf("cust-42") }, 2},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.fn); got > tt.max {
			t.Errorf("%s: %v allocations, want at most %v", tt.name, got, tt.max)
		}
	}
}
