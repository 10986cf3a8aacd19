// Package spool is the audit spool: it keeps the records of degraded decisions (answered
// without the store) on local disk until the store takes them, so that every decision
// answered OK has its audit record even while Redis is down.
//
// On disk, a spool is a directory of segment files, "<16-digit sequence>.seg", appended to
// one at a time and never rewritten, plus a LOCK file that one process holds. A segment is a
// sequence of frames: the record's length (4 bytes, little-endian), the CRC-32C of the record
// (4 bytes, little-endian), then the record (an encoded arbiterv1.DecisionRecord). A frame
// that is cut short or fails its checksum ends the segment: it is the torn tail of a write
// that a crash interrupted, and is cut off when the spool is opened. A segment whose records
// are all stored is removed; one holding records the store refused as invalid is renamed
// "<name>.rejected" and kept for an operator.
package spool

// instrumentationName names the meter of this package.
const instrumentationName = "github.com/arbiter-dev/arbiter/spool"
