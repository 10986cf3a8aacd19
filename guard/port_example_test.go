package guard_test

import (
	"log"
	"net"
	"net/http"

	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"

	"github.com/arbiter-dev/arbiter/guard"
)

// One port for gRPC (HTTP/2, through gRPC's own transport and its limits) and for Connect and
// gRPC-Web over HTTP/1.1 (through net/http, with the token checked before the body is read).
// connectFront stands for a transcoder onto gs, as arbiter serve wires Vanguard.
func ExampleGuard_SharePort() {
	sec, err := guard.New(guard.Config{GRPCAddr: "127.0.0.1:50051"}, noop.NewMeterProvider(), nil)
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer(sec.PortServerOptions(nil)...)
	// ... register the services on gs ...
	var connectFront http.Handler = gs
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	port := sec.SharePort(sec.LimitListener(lis))
	web := sec.HTTPServer(sec.HTTPHandler(connectFront))
	go gs.Serve(port.GRPC)
	go web.Serve(port.HTTP)
	go port.Serve()
	// ... at shutdown: gs.GracefulStop(), web.Shutdown(ctx), port.Close().
	gs.Stop()
	web.Close()
	port.Close()
}
