// Package loadtest drives load against an Arbiter server and reports honest latency.
//
// The default is an open loop: requests are due at a constant arrival rate, each at an
// intended send time computed by a [Schedule], and latency is measured from that intended
// time, not from when the request actually left. A server stall therefore shows up in every
// request that should have been sent during it (no coordinated omission). The tool also
// records service time (completion − actual send) and its own lag (actual send − intended)
// and warns when the load generator, not the server, was the bottleneck. A closed loop with a
// fixed concurrency is the option used to find the maximum sustainable throughput.
//
// Requests come from a [Mix]: a deterministic function of a seed and the request number, with
// event types weighted like a bank's traffic, customers drawn from a Zipf distribution,
// decline codes drawn from the card-network reference table (embedded), and a share of
// duplicate event ids standing for gateway retries. The same seed gives the same traffic.
//
// Results are a [Report]: a JSON file, a self-contained HTML page with inline SVG charts, a
// text summary and a side-by-side comparison of two reports.
package loadtest
