package server

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// registerReflection registers server reflection (v1 and v1alpha) on gs, serving the API's
// descriptors with their comments, so that `grpcurl describe` shows the documentation.
func registerReflection(gs *grpc.Server) {
	opts := reflection.ServerOptions{Services: gs, DescriptorResolver: documentedFiles()}
	reflectionv1.RegisterServerReflectionServer(gs, reflection.NewServerV1(opts))
	reflectionv1alpha.RegisterServerReflectionServer(gs, reflection.NewServer(opts))
}

// documentedFiles resolves the files of arbiterv1.DescriptorSet (the API with its comments)
// first, and every other file (health, reflection) from the global registry. It is the global
// registry alone if the set does not load, which only a broken build can cause: reflection
// then works, without comments.
func documentedFiles() protodesc.Resolver {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(arbiterv1.DescriptorSet, &set); err != nil {
		return protoregistry.GlobalFiles
	}
	docs, err := protodesc.NewFiles(&set)
	if err != nil {
		return protoregistry.GlobalFiles
	}
	return docResolver{docs}
}

// docResolver is a protodesc.Resolver that prefers the documented files.
type docResolver struct{ docs *protoregistry.Files }

func (r docResolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.docs.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (r docResolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.docs.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
