package server

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestReflectionServesComments: server reflection, as grpcurl's describe uses it, gives every
// service, RPC, message, field, oneof, enum and enum value of the API with its comment.
func TestReflectionServesComments(t *testing.T) {
	c := newClock(testNow)
	h := newHarness(t, memoryStore(t, c), c)
	for _, symbol := range []string{"arbiter.v1.DecisionService", "arbiter.v1.FeatureService", "arbiter.v1.PolicyService"} {
		t.Run(symbol, func(t *testing.T) {
			stream, err := reflectionv1.NewServerReflectionClient(h.conn).ServerReflectionInfo(t.Context())
			if err != nil {
				t.Fatalf("ServerReflectionInfo: %v", err)
			}
			err = stream.Send(&reflectionv1.ServerReflectionRequest{
				MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol},
			})
			if err != nil {
				t.Fatalf("Send(file containing %s): %v", symbol, err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv(file containing %s): %v", symbol, err)
			}
			stream.CloseSend()
			if _, err := stream.Recv(); err != io.EOF {
				t.Fatalf("Recv after CloseSend = %v, want EOF", err)
			}
			var set descriptorpb.FileDescriptorSet
			for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
				fdp := &descriptorpb.FileDescriptorProto{}
				if err := proto.Unmarshal(b, fdp); err != nil {
					t.Fatalf("file descriptor: %v", err)
				}
				set.File = append(set.File, fdp)
			}
			files, err := protodesc.NewFiles(&set)
			if err != nil {
				t.Fatalf("protodesc.NewFiles(reflection's answer for %s): %v", symbol, err)
			}
			if _, err := files.FindDescriptorByName(protoreflect.FullName(symbol)); err != nil {
				t.Fatalf("reflection's answer lacks %s: %v", symbol, err)
			}
			// The service's file and the API files it imports (types.proto).
			files.RangeFilesByPackage("arbiter.v1", func(f protoreflect.FileDescriptor) bool {
				for _, missing := range uncommented(f) {
					t.Errorf("%s (%s): no comment through reflection", missing, f.Path())
				}
				return true
			})
		})
	}
}

// uncommented lists the elements of f that have no leading comment.
func uncommented(f protoreflect.FileDescriptor) []string {
	var out []string
	locs := f.SourceLocations()
	check := func(d protoreflect.Descriptor) {
		if strings.TrimSpace(locs.ByDescriptor(d).LeadingComments) == "" {
			out = append(out, string(d.FullName()))
		}
	}
	var enums func(protoreflect.EnumDescriptors)
	enums = func(es protoreflect.EnumDescriptors) {
		for i := range es.Len() {
			e := es.Get(i)
			check(e)
			for j := range e.Values().Len() {
				check(e.Values().Get(j))
			}
		}
	}
	var messages func(protoreflect.MessageDescriptors)
	messages = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			m := ms.Get(i)
			if m.IsMapEntry() {
				continue
			}
			check(m)
			for j := range m.Fields().Len() {
				check(m.Fields().Get(j))
			}
			for j := range m.Oneofs().Len() {
				check(m.Oneofs().Get(j))
			}
			messages(m.Messages())
			enums(m.Enums())
		}
	}
	for i := range f.Services().Len() {
		s := f.Services().Get(i)
		check(s)
		for j := range s.Methods().Len() {
			check(s.Methods().Get(j))
		}
	}
	messages(f.Messages())
	enums(f.Enums())
	return out
}

// TestDescriptorSetMatchesGenerated: the documented descriptors that reflection serves
// (arbiterv1.DescriptorSet) describe the same API as the generated code, comments and the Go
// package option aside: both come from one `make generate`.
func TestDescriptorSetMatchesGenerated(t *testing.T) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(arbiterv1.DescriptorSet, &set); err != nil {
		t.Fatalf("arbiterv1.DescriptorSet: %v", err)
	}
	n := 0
	for _, doc := range set.GetFile() {
		if doc.GetPackage() != "arbiter.v1" {
			continue
		}
		n++
		gen, err := protoregistry.GlobalFiles.FindFileByPath(doc.GetName())
		if err != nil {
			t.Errorf("%s is in DescriptorSet but not in the generated code: run make generate", doc.GetName())
			continue
		}
		want := protodesc.ToFileDescriptorProto(gen)
		got := proto.CloneOf(doc)
		for _, fdp := range []*descriptorpb.FileDescriptorProto{want, got} {
			fdp.SourceCodeInfo = nil
			fdp.Options = nil
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("DescriptorSet's %s differs from the generated code (run make generate) (-generated +set):\n%s", doc.GetName(), diff)
		}
	}
	want := protoregistry.GlobalFiles.NumFilesByPackage("arbiter.v1")
	if n != want {
		t.Errorf("DescriptorSet holds %d files of package arbiter.v1, the generated code %d: run make generate", n, want)
	}
}
