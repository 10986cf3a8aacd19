package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// unmarshalRequest decodes a request message from protobuf JSON. When the JSON names an enum
// value the message does not know, the error names the field by its path and lists the valid
// values (protojson's own names only the field, not where it is or what it may be).
func unmarshalRequest(data []byte, m proto.Message) error {
	err := protojson.Unmarshal(data, m)
	if err == nil {
		return nil
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if dec.Decode(&doc) != nil {
		return err // not JSON at all: protojson says where
	}
	if e := unknownEnum(m.ProtoReflect().Descriptor(), doc, ""); e != nil {
		return e
	}
	return err
}

// unknownEnumError is an enum value a message does not know.
type unknownEnumError struct {
	path  string // "event.type", "customer.consents[0].channel"
	value string
	valid []string
}

func (e *unknownEnumError) Error() string {
	return fmt.Sprintf("%s: unknown value %q; valid values: %s", e.path, e.value, strings.Join(e.valid, ", "))
}

// unknownEnum returns the first enum value in v, the JSON form of a message md at path, that
// md does not know, or nil. Fields are taken in the message's order.
func unknownEnum(md protoreflect.MessageDescriptor, v any, path string) error {
	obj, ok := v.(map[string]any)
	if !ok || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return nil // well-known types have JSON forms of their own, without enums
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		key := fd.JSONName()
		val, ok := obj[key]
		if !ok {
			key = string(fd.Name())
			if val, ok = obj[key]; !ok {
				continue
			}
		}
		p := key
		if path != "" {
			p = path + "." + key
		}
		var err error
		switch {
		case fd.IsMap():
			m, _ := val.(map[string]any)
			for _, k := range slices.Sorted(maps.Keys(m)) {
				if err = unknownEnumValue(fd.MapValue(), m[k], p+"."+k); err != nil {
					break
				}
			}
		case fd.IsList():
			l, _ := val.([]any)
			for j, x := range l {
				if err = unknownEnumValue(fd, x, fmt.Sprintf("%s[%d]", p, j)); err != nil {
					break
				}
			}
		default:
			err = unknownEnumValue(fd, val, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unknownEnumValue checks one value of field fd (an element, for a list or map field).
func unknownEnumValue(fd protoreflect.FieldDescriptor, v any, path string) error {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		ed := fd.Enum()
		s, ok := v.(string)
		if !ok || ed.FullName() == "google.protobuf.NullValue" || ed.Values().ByName(protoreflect.Name(s)) != nil {
			return nil // numbers and null are protojson's to judge
		}
		var valid []string
		for i := range ed.Values().Len() {
			ev := ed.Values().Get(i)
			if ev.Number() == 0 && strings.HasSuffix(string(ev.Name()), "_UNSPECIFIED") {
				continue
			}
			valid = append(valid, string(ev.Name()))
		}
		return &unknownEnumError{path: path, value: s, valid: valid}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return unknownEnum(fd.Message(), v, path)
	}
	return nil
}
