package guard

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckBindSafety(t *testing.T) {
	tests := []struct {
		addr       string
		auth       bool
		insecure   bool
		wantErr    bool
		wantNotice string
	}{
		{"127.0.0.1:9090", false, false, false, "loopback only"},
		{"127.0.0.2:9090", false, false, false, "loopback only"},
		{"[::1]:9090", false, false, false, "loopback only"},
		{"[::ffff:127.0.0.1]:9090", false, false, false, "loopback only"},
		{"localhost:9090", false, false, false, "loopback only"},
		{"LOCALHOST:9090", false, false, false, "loopback only"},
		{"unix:/run/arbiter.sock", false, false, false, "loopback only"},
		{":9090", false, false, true, ""},
		{"0.0.0.0:9090", false, false, true, ""},
		{"[::]:9090", false, false, true, ""},
		{"10.1.2.3:9090", false, false, true, ""},
		{"arbiter.internal:9090", false, false, true, ""},
		{"localhost.evil.example:9090", false, false, true, ""},
		{"no-port", false, false, true, ""},
		{"0.0.0.0:9090", false, true, false, "INSECURE"},
		{":9090", false, true, false, "INSECURE"},
		{"0.0.0.0:9090", true, false, false, "authentication on"},
		{"127.0.0.1:9090", true, false, false, "authentication on"},
	}
	for _, tt := range tests {
		notice, err := CheckBindSafety(tt.addr, tt.auth, tt.insecure)
		if tt.wantErr {
			if !errors.Is(err, ErrInsecureBind) {
				t.Errorf("CheckBindSafety(%q, auth=%v, insecure=%v) = %q, %v, want ErrInsecureBind", tt.addr, tt.auth, tt.insecure, notice, err)
			}
			continue
		}
		if err != nil || !strings.Contains(notice, tt.wantNotice) {
			t.Errorf("CheckBindSafety(%q, auth=%v, insecure=%v) = %q, %v, want notice containing %q", tt.addr, tt.auth, tt.insecure, notice, err, tt.wantNotice)
		}
	}
}
