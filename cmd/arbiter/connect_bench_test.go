package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// BenchmarkServeDecideProtocols: one Decide at a time through arbiter serve (embedded store,
// default policy), over gRPC and over Connect JSON on the same port: what the transcoding
// costs per call.
func BenchmarkServeDecideProtocols(b *testing.B) {
	grpcAddr, _, _, _ := startServe(b)
	var req arbiterv1.DecideRequest
	if err := protojson.Unmarshal([]byte(sampleEvent), &req); err != nil {
		b.Fatal(err)
	}
	b.Run("grpc", func(b *testing.B) {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		c := arbiterv1.NewDecisionServiceClient(conn)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			req.Event.Id = fmt.Sprintf("evt-g-%d", i)
			req.Customer.Id = fmt.Sprintf("cust-g-%d", i)
			i++
			if _, err := c.Decide(b.Context(), &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("connect-json", func(b *testing.B) {
		client := &http.Client{}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			body := strings.Replace(strings.Replace(sampleEvent, "evt-0001", fmt.Sprintf("evt-c-%d", i), 1), "cust-123", fmt.Sprintf("cust-c-%d", i), 1)
			i++
			resp, err := client.Post("http://"+grpcAddr+"/arbiter.v1.DecisionService/Decide", "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("Decide = %d", resp.StatusCode)
			}
		}
	})
}
