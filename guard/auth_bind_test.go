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

func TestCheckAdminBind(t *testing.T) {
	tests := []struct {
		addr                  string
		auth, insecure, pprof bool
		wantErr               bool
		wantNotice            string
	}{
		{"127.0.0.1:8080", false, false, false, false, "loopback only"},
		{"127.0.0.1:8080", false, false, true, false, "loopback only"},
		{"0.0.0.0:8089", false, false, false, true, ""},
		{"0.0.0.0:8089", false, false, true, true, ""},
		{"0.0.0.0:8089", false, true, false, false, "INSECURE"},
		// Profiles never go to the network without tokens, --insecure or not.
		{"0.0.0.0:8089", false, true, true, true, ""},
		{":8089", true, false, true, false, "admin role"},
		{"0.0.0.0:8089", true, false, false, false, "metrics role"},
	}
	for _, tt := range tests {
		notice, err := CheckAdminBind(tt.addr, tt.auth, tt.insecure, tt.pprof)
		if tt.wantErr {
			if !errors.Is(err, ErrInsecureBind) {
				t.Errorf("CheckAdminBind(%q, auth=%v, insecure=%v, pprof=%v) = %q, %v, want ErrInsecureBind", tt.addr, tt.auth, tt.insecure, tt.pprof, notice, err)
			}
			continue
		}
		if err != nil || !strings.Contains(notice, tt.wantNotice) {
			t.Errorf("CheckAdminBind(%q, auth=%v, insecure=%v, pprof=%v) = %q, %v, want notice containing %q", tt.addr, tt.auth, tt.insecure, tt.pprof, notice, err, tt.wantNotice)
		}
	}
}
