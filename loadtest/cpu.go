package loadtest

import (
	"context"
	"math"
)

// CPUCost is the CPU time one call cost on average over a whole run (warm-up included), in
// microseconds, for the load generator, the server and Redis; -1 where unknown. On a machine
// shared with other work, CPU time per call is steadier than latency or throughput, and its
// ratio between two targets predicts the ratio of their CPU-bound maximum throughputs.
type CPUCost struct {
	Calls    int64   `json:"calls"`
	ClientUs float64 `json:"client_us"`
	ServerUs float64 `json:"server_us"`
	RedisUs  float64 `json:"redis_us"`
}

// CPUSnapshot is a reading of the CPU time used so far by the load generator, the server and
// Redis, in seconds; -1 where unknown.
type CPUSnapshot struct{ client, server, redis float64 }

// TakeCPU reads the CPU time used so far; w may be nil (then only the client's is known).
func TakeCPU(ctx context.Context, w *Watcher) CPUSnapshot {
	s := CPUSnapshot{client: processCPU(), server: -1, redis: -1}
	if w != nil {
		r := w.Sample(ctx)
		s.server, s.redis = r.ServerCPU, r.RedisCPU
	}
	return s
}

// Cost returns the CPU time per call between snapshot a and b, over calls calls.
func Cost(a, b CPUSnapshot, calls int64) *CPUCost {
	per := func(x, y float64) float64 {
		if calls == 0 || x < 0 || y < 0 {
			return -1
		}
		return math.Round((y-x)/float64(calls)*1e7) / 10
	}
	return &CPUCost{Calls: calls, ClientUs: per(a.client, b.client), ServerUs: per(a.server, b.server), RedisUs: per(a.redis, b.redis)}
}
