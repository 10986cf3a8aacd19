package guard_test

import (
	"fmt"
	"log"

	"github.com/arbiter-dev/arbiter/guard"
)

// A new client: make a token, give it to the client once, and put its hash in the token file.
func ExampleNewToken() {
	token, err := guard.NewToken(nil)
	if err != nil {
		log.Fatal(err)
	}
	entry := fmt.Sprintf("clients:\n  - name: payment-gateway\n    token_sha256: %s\n    roles: [decide]\n", guard.HashToken(token))
	cfg, err := guard.ParseAuthConfig([]byte(entry))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Clients[0].Name, cfg.Clients[0].Roles, len(cfg.Clients[0].TokenSHA256))
	// Output: payment-gateway [decide] 64
}

func ExampleCheckBindSafety() {
	_, err := guard.CheckBindSafety("0.0.0.0:50051", false, false)
	fmt.Println(err)
	notice, _ := guard.CheckBindSafety("127.0.0.1:50051", false, false)
	fmt.Println(notice)
	// Output:
	// refusing to listen on a non-loopback address without authentication: 0.0.0.0:50051 is not loopback; configure client tokens, listen on 127.0.0.1, or pass --insecure
	// no authentication configured: listening on loopback only (127.0.0.1:50051); configure client tokens to listen on other addresses
}
