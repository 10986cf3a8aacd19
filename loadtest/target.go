package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ErrNotLoopback is returned for a target that is not a loopback address: the tool only
// loads servers on the machine it runs on.
var ErrNotLoopback = errors.New("not a loopback address")

// CheckLoopback returns an error wrapping ErrNotLoopback unless hostport's host is
// "localhost" or a loopback IP.
func CheckLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("address %q: %w", hostport, err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("address %q: %w", hostport, ErrNotLoopback)
}

// clientWindow is the fixed HTTP/2 flow-control window of the load tester's connections.
const clientWindow = 1 << 20

// Dial opens n separate gRPC connections (each its own HTTP/2 transport) to a loopback addr
// with creds (nil: plaintext), sending token as a bearer token on every call when it is not
// empty. The caller closes them with CloseAll.
func Dial(addr string, n int, token string, creds credentials.TransportCredentials) ([]*grpc.ClientConn, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	if n < 1 {
		n = 1
	}
	// Fixed flow-control windows, as the server has: a dynamic window makes the client send
	// a bandwidth-probing PING after most reads, which costs the generator CPU that the
	// server and Redis share on one machine (the generator's CPU per call fell 5-15%).
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(clientWindow), grpc.WithInitialConnWindowSize(clientWindow)}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{"Bearer " + token}))
	}
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
		if err != nil {
			CloseAll(conns)
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		cc.Connect()
		conns = append(conns, cc)
	}
	return conns, nil
}

// CloseAll closes conns.
func CloseAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close() // closing a client connection has nothing to report that we act on
	}
}

// decideTarget sends Decide requests from a Mix, spreading them over the connections.
type decideTarget struct {
	clients []arbiterv1.DecisionServiceClient
	mix     *Mix
}

// DecideTarget returns the Target that sends mix's request i to DecisionService/Decide over
// connection i mod len(conns).
func DecideTarget(conns []grpc.ClientConnInterface, mix *Mix) Target {
	t := &decideTarget{mix: mix}
	for _, c := range conns {
		t.clients = append(t.clients, arbiterv1.NewDecisionServiceClient(c))
	}
	return t
}

type decideCall struct {
	client arbiterv1.DecisionServiceClient
	req    *arbiterv1.DecideRequest
}

func (t *decideTarget) Prepare(i uint64) any {
	return decideCall{client: t.clients[i%uint64(len(t.clients))], req: t.mix.Request(i)}
}

func (t *decideTarget) Call(ctx context.Context, req any) (Reply, error) {
	c := req.(decideCall)
	resp, err := c.client.Decide(ctx, c.req)
	if err != nil {
		return Reply{}, err
	}
	return Reply{
		Action:     strings.TrimPrefix(resp.GetAction().String(), "ACTION_"),
		Degraded:   resp.GetDegraded(),
		Replayed:   resp.GetReplayed(),
		EventID:    c.req.GetEvent().GetId(),
		DecisionID: resp.GetDecisionId(),
	}, nil
}

// healthTarget calls the standard gRPC health Check: the empty handler that is the floor of
// the machine, the transport and the client.
type healthTarget struct {
	clients []healthpb.HealthClient
	req     *healthpb.HealthCheckRequest
}

// HealthTarget returns the Target that calls grpc.health.v1.Health/Check (whole server) over
// connection i mod len(conns).
func HealthTarget(conns []grpc.ClientConnInterface) Target {
	t := &healthTarget{req: &healthpb.HealthCheckRequest{}}
	for _, c := range conns {
		t.clients = append(t.clients, healthpb.NewHealthClient(c))
	}
	return t
}

func (t *healthTarget) Prepare(i uint64) any { return t.clients[i%uint64(len(t.clients))] }

func (t *healthTarget) Call(ctx context.Context, req any) (Reply, error) {
	_, err := req.(healthpb.HealthClient).Check(ctx, t.req)
	return Reply{}, err
}

// Interfaces converts connections to the interface the targets take.
func Interfaces(conns []*grpc.ClientConn) []grpc.ClientConnInterface {
	out := make([]grpc.ClientConnInterface, len(conns))
	for i, c := range conns {
		out[i] = c
	}
	return out
}

// bearer sends "authorization: Bearer <token>" with every call. The target is on loopback,
// where the server accepts tokens without TLS.
type bearer struct{ value string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.value}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
