package featurestore

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"time"
)

// The key schema, in one place. Every key starts with the hash tag of a bucket, "{b:XX}", so
// all keys of one customer, the customer's decisions and the bucket's audit stream live in one
// Redis Cluster slot and every script touches one slot:
//
//	{b:XX}:c:<customer_id>:f               features hash (field -> JSON value)
//	{b:XX}:c:<customer_id>:m               reserved messages zset (score: ms)
//	{b:XX}:c:<customer_id>:l               retry ledger zset (score: ms)
//	{b:XX}:c:<customer_id>:s               retry stops hash
//	{b:XX}:c:<customer_id>:x               failing channels hash
//	{b:XX}:c:<customer_id>:r               recent decisions list, newest first
//	{b:XX}:c:<customer_id>:v               version: id of the last decision that added to m, l or s
//	{b:XX}:c:<customer_id>:k               state marker: when the customer's state was last known whole (WithStateMarker)
//	{b:XX}:c:<customer_id>:e:<event_id>    event id -> decision id (idempotency)
//	{b:XX}:c:<customer_id>:g               erasure tombstones list (EraseCustomer), oldest first
//	{b:XX}:d:<decision_id>                 encoded decision record
//	{b:XX}:o:<decision_id>                 outcomes hash
//	{b:XX}:n:<decision_id>                 confirmations list (Confirm), oldest first
//	{b:XX}:audit                           the bucket's audit stream
//	{b:XX}:erased                          decisions erased (EraseCustomer) within the retention, zset (score: ms)
//
// XX is fnv-1a-32(customer_id) % 256 in two lowercase hex digits. In keys, a customer id has
// '%' and ':' percent-encoded ("%25", "%3A"), so no customer id can end where another
// customer's kind begins (customer "x:e:y" and customer "x" with event "y:m" would otherwise
// share a key); ids without them appear as they are.

// keyKind names one kind of key in the schema.
type keyKind uint8

const (
	keyFeatures keyKind = iota
	keyMessages
	keyLedger
	keyStops
	keyFailing
	keyRecent
	keyVersion
	keyEvent
	keyDecision
	keyOutcomes
	keyAudit
	keyConfirmations
	keyErasures
	keyErased
	// keyEventPrefix is "{b:XX}:c:<customer_id>:e:", the prefix of the customer's event keys.
	keyEventPrefix
	// keyDecisionPrefix is "{b:XX}:d:", which the scripts complete with a stored decision id.
	keyDecisionPrefix
)

// bucket is a customer's bucket: the hash tag of all the customer's keys.
type bucket uint8

// bucketOf returns fnv-1a-32(customerID) % 256.
func bucketOf(customerID string) bucket {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(customerID); i++ {
		h ^= uint32(customerID[i])
		h *= prime32
	}
	return bucket(h % 256)
}

const hexDigits = "0123456789abcdef"

// key builds every key of the store. customerID is used by the customer kinds, id is the event
// id for keyEvent and the decision id for keyDecision and keyOutcomes.
func key(kind keyKind, b bucket, customerID, id string) string {
	tag := "{b:" + string([]byte{hexDigits[b>>4], hexDigits[b&0xf]}) + "}"
	customerID = escapeKeyPart(customerID)
	switch kind {
	case keyFeatures:
		return tag + ":c:" + customerID + ":f"
	case keyMessages:
		return tag + ":c:" + customerID + ":m"
	case keyLedger:
		return tag + ":c:" + customerID + ":l"
	case keyStops:
		return tag + ":c:" + customerID + ":s"
	case keyFailing:
		return tag + ":c:" + customerID + ":x"
	case keyRecent:
		return tag + ":c:" + customerID + ":r"
	case keyVersion:
		return tag + ":c:" + customerID + ":v"
	case keyEvent:
		return tag + ":c:" + customerID + ":e:" + id
	case keyDecision:
		return tag + ":d:" + id
	case keyOutcomes:
		return tag + ":o:" + id
	case keyConfirmations:
		return tag + ":n:" + id
	case keyErasures:
		return tag + ":c:" + customerID + ":g"
	case keyEventPrefix:
		return tag + ":c:" + customerID + ":e:"
	case keyAudit:
		return tag + ":audit"
	case keyErased:
		return tag + ":erased"
	case keyDecisionPrefix:
		return tag + ":d:"
	}
	panic("featurestore: unknown key kind") // unreachable: kinds are constants of this file
}

// escapeKeyPart percent-encodes '%' and ':' in s.
func escapeKeyPart(s string) string {
	if !strings.ContainsAny(s, "%:") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b.WriteString("%25")
		case ':':
			b.WriteString("%3A")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// customerKeys are the keys of one customer's state.
type customerKeys struct {
	bucket                                                            bucket
	features, messages, ledger, stops, failing, recent, version, kept string
}

func keysOf(customerID string) customerKeys {
	b := bucketOf(customerID)
	// The eight keys differ only in their last letter: build them in one string and slice
	// it, one allocation instead of eight (the Decide hot path calls this twice).
	const kinds = "fmlsxrvk"
	stem := key(keyFeatures, b, customerID, "")
	stem = stem[:len(stem)-1]
	n := len(stem) + 1
	var sb strings.Builder
	sb.Grow(n * len(kinds))
	for i := range len(kinds) {
		sb.WriteString(stem)
		sb.WriteByte(kinds[i])
	}
	all := sb.String()
	at := func(i int) string { return all[i*n : (i+1)*n] }
	return customerKeys{
		bucket:   b,
		features: at(0),
		messages: at(1),
		ledger:   at(2),
		stops:    at(3),
		failing:  at(4),
		recent:   at(5),
		version:  at(6),
		kept:     at(7),
	}
}

// decisionIDLen is the length of a decision id: "XX-" and a 36-character UUIDv7.
const decisionIDLen = 2 + 1 + 36

// NewDecisionID returns a new unique decision id for a decision about customerID made at now:
// the customer's bucket in two hex digits, "-", and a UUIDv7 whose timestamp is now, for
// example "3f-0190f5a2-7c1e-7d4b-9a51-0c3e5b7d9f21". Ids of one bucket sort by time (to the
// millisecond). GetDecision finds a decision's keys from its id alone.
func NewDecisionID(customerID string, now time.Time) string {
	var u [16]byte
	ms := uint64(now.UnixMilli())
	u[0], u[1], u[2] = byte(ms>>40), byte(ms>>32), byte(ms>>24)
	u[3], u[4], u[5] = byte(ms>>16), byte(ms>>8), byte(ms)
	r1, r2 := rand.Uint64(), rand.Uint64()
	for i := range 2 {
		u[6+i] = byte(r1 >> (8 * i))
	}
	for i := range 8 {
		u[8+i] = byte(r2 >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return formatDecisionID(bucketOf(customerID), &u)
}

// DegradedDecisionID returns the decision id of a degraded answer to the event eventID of the
// customer customerID: the same on every call and every replica, so that an event answered
// without the store has one decision and one record however often it is resent. It has the
// form of NewDecisionID's ids, with a UUIDv8 made of a SHA-256 of the two ids.
func DegradedDecisionID(customerID, eventID string) string {
	h := sha256.New()
	h.Write([]byte("arbiter degraded decision\x00"))
	h.Write([]byte(customerID))
	h.Write([]byte{0})
	h.Write([]byte(eventID))
	var sum [sha256.Size]byte
	var u [16]byte
	copy(u[:], h.Sum(sum[:0]))
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return formatDecisionID(bucketOf(customerID), &u)
}

// formatDecisionID writes a decision id: bucket b in two hex digits, "-", and the UUID u.
func formatDecisionID(b bucket, u *[16]byte) string {
	var out [decisionIDLen]byte
	out[0], out[1], out[2] = hexDigits[b>>4], hexDigits[b&0xf], '-'
	dst := out[3:]
	hex.Encode(dst[0:8], u[0:4])
	dst[8] = '-'
	hex.Encode(dst[9:13], u[4:6])
	dst[13] = '-'
	hex.Encode(dst[14:18], u[6:8])
	dst[18] = '-'
	hex.Encode(dst[19:23], u[8:10])
	dst[23] = '-'
	hex.Encode(dst[24:36], u[10:16])
	return string(out[:])
}

// bucketOfDecisionID returns the bucket a decision id names. A string that is not of the form
// NewDecisionID makes returns ErrNotFound: no such decision can exist.
func bucketOfDecisionID(id string) (bucket, error) {
	if len(id) != decisionIDLen || id[2] != '-' {
		return 0, ErrNotFound
	}
	var b int
	for i := range len(id) {
		c := id[i]
		switch {
		case i == 2 || i == 3+8 || i == 3+13 || i == 3+18 || i == 3+23:
			if c != '-' {
				return 0, ErrNotFound
			}
		case '0' <= c && c <= '9':
			if i < 2 {
				b = b<<4 | int(c-'0')
			}
		case 'a' <= c && c <= 'f':
			if i < 2 {
				b = b<<4 | int(c-'a'+10)
			}
		default:
			return 0, ErrNotFound
		}
	}
	return bucket(b), nil
}
