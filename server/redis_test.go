package server

import (
	"testing"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
)

var _ Store = (*featurestore.Redis)(nil)

// extraStores are the stores beyond the embedded one that the end-to-end tests run against:
// a real redis-server started for each test on a free loopback port.
var extraStores = []storeFactory{{"redis", redisStore}}

func redisStore(t testing.TB, _ *clock) Store {
	client, err := featurestore.Dial("redis://" + redistest.Start(t))
	if err != nil {
		t.Fatalf("featurestore.Dial() error: %v", err)
	}
	s := featurestore.NewRedis(client)
	t.Cleanup(func() { s.Close() })
	return s
}
