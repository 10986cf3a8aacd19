package guard

import (
	"encoding/hex"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// FuzzParseAuthConfig feeds arbitrary bytes to the token file parser: it must not panic, and
// whatever it accepts must be a usable, fully checked configuration.
func FuzzParseAuthConfig(f *testing.F) {
	h := HashToken("seed")
	f.Add([]byte("clients:\n  - name: gateway\n    token_sha256: " + h + "\n    roles: [decide, read]\n    rate_limit: {per_second: 10, burst: 20}\n"))
	f.Add([]byte(`{"clients":[{"name":"a","token_sha256":"` + h + `","roles":["admin"]}]}`))
	f.Add([]byte("clients: [{name: a, token: plain, roles: [decide]}]"))
	f.Add([]byte("clients: &a [*a]"))
	mp := sdkmetric.NewMeterProvider()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseAuthConfig(data)
		if err != nil {
			return
		}
		if len(cfg.Clients) == 0 {
			t.Fatalf("ParseAuthConfig accepted a config with no clients")
		}
		for _, c := range cfg.Clients {
			if b, err := hex.DecodeString(c.TokenSHA256); c.Name == "" || err != nil || len(b) != 32 || len(c.Roles) == 0 {
				t.Fatalf("ParseAuthConfig accepted client %+v", c)
			}
		}
		if _, err := NewAuthenticator(cfg, mp); err != nil {
			t.Fatalf("NewAuthenticator(accepted config) = %v", err)
		}
	})
}
