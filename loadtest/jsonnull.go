package loadtest

import "encoding/json"

// In memory an unknown figure is -1 (the CPU time of a process not watched, the steal share
// where /proc/stat is missing); in the JSON report it is null, which no reader mistakes for a
// measurement. These methods translate, both ways: a report that holds -1 (written before)
// reads back the same.

// unknownAsNull returns nil for an unknown (negative) figure, else a pointer to it.
func unknownAsNull[T int64 | float64](v T) *T {
	if v < 0 {
		return nil
	}
	return &v
}

// nullAsUnknown returns -1 for a null figure, else its value.
func nullAsUnknown[T int64 | float64](p *T) T {
	if p == nil {
		return -1
	}
	return *p
}

// MarshalJSON writes r with steal_percent null when unknown.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	return json.Marshal(struct {
		plain
		StealPercent *float64 `json:"steal_percent"`
	}{plain(r), unknownAsNull(r.StealPercent)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Report) UnmarshalJSON(b []byte) error {
	type plain Report
	aux := struct {
		*plain
		StealPercent *float64 `json:"steal_percent"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	r.StealPercent = nullAsUnknown(aux.StealPercent)
	return nil
}

// MarshalJSON writes c with each unknown CPU time null.
func (c CPUCost) MarshalJSON() ([]byte, error) {
	type plain CPUCost
	return json.Marshal(struct {
		plain
		ClientUs *float64 `json:"client_us"`
		ServerUs *float64 `json:"server_us"`
		RedisUs  *float64 `json:"redis_us"`
	}{plain(c), unknownAsNull(c.ClientUs), unknownAsNull(c.ServerUs), unknownAsNull(c.RedisUs)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *CPUCost) UnmarshalJSON(b []byte) error {
	type plain CPUCost
	aux := struct {
		*plain
		ClientUs *float64 `json:"client_us"`
		ServerUs *float64 `json:"server_us"`
		RedisUs  *float64 `json:"redis_us"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	c.ClientUs, c.ServerUs, c.RedisUs = nullAsUnknown(aux.ClientUs), nullAsUnknown(aux.ServerUs), nullAsUnknown(aux.RedisUs)
	return nil
}

// MarshalJSON writes s with each unknown reading null.
func (s ResourceSample) MarshalJSON() ([]byte, error) {
	type plain ResourceSample
	return json.Marshal(struct {
		plain
		RedisClients *int64   `json:"redis_clients"`
		ServerCPU    *float64 `json:"server_cpu_s"`
		RedisCPU     *float64 `json:"redis_cpu_s"`
	}{plain(s), unknownAsNull(s.RedisClients), unknownAsNull(s.ServerCPU), unknownAsNull(s.RedisCPU)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *ResourceSample) UnmarshalJSON(b []byte) error {
	type plain ResourceSample
	aux := struct {
		*plain
		RedisClients *int64   `json:"redis_clients"`
		ServerCPU    *float64 `json:"server_cpu_s"`
		RedisCPU     *float64 `json:"redis_cpu_s"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	s.RedisClients, s.ServerCPU, s.RedisCPU = nullAsUnknown(aux.RedisClients), nullAsUnknown(aux.ServerCPU), nullAsUnknown(aux.RedisCPU)
	return nil
}
