package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Request size limits. A request over maxRequestBytes is answered
// RESOURCE_EXHAUSTED with ErrorInfo MESSAGE_TOO_LARGE by otpd, counted and
// logged like any call. grpc-go itself refuses, before otpd sees the call,
// a request over maxTransportBytes, with a bare RESOURCE_EXHAUSTED
// ("received message larger than max"); callStats still counts and logs
// those. The gap between the two is what grpc-go reads in full before otpd
// can answer: a request that size is a broken client, not a real one (no
// valid request is near even 1 KiB), and the gap keeps it cheap.
const (
	maxRequestBytes   = 64 << 10
	maxTransportBytes = 256 << 10
)

// errorDomain is the google.rpc.ErrorInfo domain of otpd's errors.
const errorDomain = "otpd"

// Why a codec that never fails, and a mark on the message:
//
// grpc-go decodes a unary request inside the generated handler, before the
// interceptors run, and answers a decoding error itself as INTERNAL ("grpc:
// failed to unmarshal the received message"): invalid UTF-8 in a string
// field or a truncated message would be a server bug to the caller, and
// neither the call metrics nor the call log would see it. So requestCodec
// decodes without failing: on a message that does not decode, or is over
// maxRequestBytes, it resets the message and marks it, and refuseMalformed
// (a unary interceptor placed after the metrics and the call log) and
// checkedStream (RecvMsg of streaming calls: health Watch, reflection) turn
// the mark into the status the caller gets.
//
// The mark travels in the message itself, as a field in its unknown fields
// under a number no otpd message uses, rather than in a table keyed by the
// message: a table would keep the entries of requests that never reach the
// check (a call refused by caller authentication first) unless something
// swept it, while a mark dies with its message. A caller cannot forge it:
// requestCodec decodes with DiscardUnknown, so a decoded message never
// carries unknown fields of the caller's (otpd reads none anyway), and the
// only unknown field is the codec's own.
//
// The one exception is a request that the HTTP API listener transcoded
// (see api.go): a Connect JSON body that does not decode is marked there,
// before the transcoder re-encodes it as protobuf for the gRPC server, and
// the mark crosses the wire as the message's only field. requestCodec
// honours such a mark only when it carries markSecret, drawn at start and
// never sent anywhere, so that a caller still cannot forge one.
const markField protowire.Number = protowire.MaxValidNumber

// markSecret authenticates a mark that crossed the wire (see markField).
var markSecret = rand.Text()

// Kinds of malformed request, which are also the values of the call log's
// "malformed" attribute.
const (
	malformedEncoding = "invalid_protobuf"
	malformedUTF8     = "invalid_utf8"
	malformedTooLarge = "too_large"
	malformedJSON     = "invalid_json"
)

// requestCodec is the server's codec: grpc-go's proto codec, except that
// decoding marks what does not decode instead of failing.
type requestCodec struct {
	base encoding.CodecV2
}

func newRequestCodec() requestCodec {
	return requestCodec{base: encoding.GetCodecV2(protocodec.Name)}
}

func (requestCodec) Name() string { return protocodec.Name }

func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return c.base.Unmarshal(data, v)
	}
	if n := data.Len(); n > maxRequestBytes {
		mark(m, malformed{kind: malformedTooLarge, size: n})
		return nil
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if bad, ok := parseMark(b); ok { // marked by the API listener's transcoder
		mark(m, bad)
		return nil
	}
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, m); err != nil {
		mark(m, diagnose(m.ProtoReflect().Descriptor(), b))
		return nil
	}
	return nil
}

// malformed is what was wrong with a request.
type malformed struct {
	kind  string // malformedEncoding, malformedUTF8, malformedTooLarge or malformedJSON
	size  int    // bytes, for malformedTooLarge
	field string // the field's path when known: a field name of otpd's, never the caller's bytes; for malformedJSON where the JSON is wrong ("line 1, column 7")
}

// mark resets m and records bad in it.
func mark(m proto.Message, bad malformed) {
	proto.Reset(m)
	var p []byte
	p = protowire.AppendTag(p, 1, protowire.BytesType)
	p = protowire.AppendString(p, bad.kind)
	p = protowire.AppendTag(p, 2, protowire.VarintType)
	p = protowire.AppendVarint(p, uint64(bad.size))
	p = protowire.AppendTag(p, 3, protowire.BytesType)
	p = protowire.AppendString(p, bad.field)
	p = protowire.AppendTag(p, 4, protowire.BytesType)
	p = protowire.AppendString(p, markSecret)
	m.ProtoReflect().SetUnknown(appendMark(nil, p))
}

func appendMark(b, payload []byte) []byte {
	b = protowire.AppendTag(b, markField, protowire.BytesType)
	return protowire.AppendBytes(b, payload)
}

// takeMark returns what mark recorded in req, if anything.
func takeMark(req any) (malformed, bool) {
	m, ok := req.(proto.Message)
	if !ok {
		return malformed{}, false
	}
	return parseMark(m.ProtoReflect().GetUnknown())
}

// parseMark reads raw, the unknown fields of a message or a whole encoded
// message, as one mark carrying markSecret and nothing else.
func parseMark(raw []byte) (malformed, bool) {
	if len(raw) == 0 {
		return malformed{}, false
	}
	num, typ, n := protowire.ConsumeTag(raw)
	if n < 0 || num != markField || typ != protowire.BytesType {
		return malformed{}, false
	}
	p, n := protowire.ConsumeBytes(raw[n:])
	if n < 0 || len(raw) != protowire.SizeTag(markField)+n {
		return malformed{}, false
	}
	var (
		bad    malformed
		secret bool
	)
	for len(p) > 0 {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 {
			return malformed{}, false
		}
		p = p[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(p)
			bad.kind, p = v, p[max(n, 0):]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(p)
			bad.size, p = int(v), p[max(n, 0):]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(p)
			bad.field, p = v, p[max(n, 0):]
		case num == 4 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(p)
			secret, p = bytes.Equal(v, []byte(markSecret)), p[max(n, 0):]
		default:
			return malformed{}, false
		}
	}
	return bad, secret && bad.kind != ""
}

// diagnose finds the first problem in b, the wire form of a message of
// type md that did not decode: a string field with invalid UTF-8, named by
// its path, or an encoding that is truncated or invalid. It reports only
// otpd's own names, never the caller's bytes.
func diagnose(md protoreflect.MessageDescriptor, b []byte) malformed {
	if path, ok := badUTF8(md, b, ""); ok {
		return malformed{kind: malformedUTF8, field: path}
	}
	return malformed{kind: malformedEncoding}
}

// badUTF8 walks b in wire order and returns the path of the first string
// field holding invalid UTF-8 (ok), or stops at the first encoding error
// (not ok: the message is malformed before any such field).
func badUTF8(md protoreflect.MessageDescriptor, b []byte, prefix string) (path string, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return "", false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		name := prefix + string(fd.Name())
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name, true
			}
		case protoreflect.MessageKind:
			if path, ok := badUTF8(fd.Message(), v, name+"."); ok {
				return path, true
			}
		}
	}
	return "", false
}

// err is the status a caller gets for a malformed request of type typ.
func (bad malformed) err(typ protoreflect.FullName) error {
	var (
		st  *status.Status
		det protoadapt.MessageV1
	)
	switch bad.kind {
	case malformedTooLarge:
		st = status.Newf(codes.ResourceExhausted, "request of %d bytes is larger than the limit of %d bytes", bad.size, maxRequestBytes)
		det = &errdetails.ErrorInfo{Reason: "MESSAGE_TOO_LARGE", Domain: errorDomain, Metadata: map[string]string{
			"max_bytes": strconv.Itoa(maxRequestBytes),
		}}
	case malformedJSON:
		desc := fmt.Sprintf("is not valid JSON for %s", typ)
		if bad.field != "" {
			desc += " (at " + bad.field + ")"
		}
		st = status.New(codes.InvalidArgument, "invalid request: the request "+desc)
		det = &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "", Description: "the request " + desc},
		}}
	case malformedUTF8:
		st = status.New(codes.InvalidArgument, "invalid request: "+bad.field+" must be valid UTF-8")
		det = &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: bad.field, Description: "must be valid UTF-8"},
		}}
	default:
		desc := fmt.Sprintf("is not a valid %s: truncated or malformed protobuf", typ)
		st = status.New(codes.InvalidArgument, "invalid request: the request "+desc)
		det = &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "", Description: "the request " + desc},
		}}
	}
	if withDet, err := st.WithDetails(det); err == nil {
		st = withDet
	}
	return st.Err()
}

// refuseMalformed is the answer to a request that requestCodec marked,
// nil for any other. It runs after the metrics and the call log, so that
// they count and log it.
func refuseMalformed(ctx context.Context, req any) error {
	bad, ok := takeMark(req)
	if !ok {
		return nil
	}
	if cs := callStateFrom(ctx); cs != nil {
		cs.malformed = bad.kind
	}
	return bad.err(req.(proto.Message).ProtoReflect().Descriptor().FullName())
}

// checkStreams makes streaming calls (health Watch, reflection) answer a
// marked message the same way.
func checkStreams() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, checkedStream{ss})
	}
}

type checkedStream struct{ grpc.ServerStream }

func (s checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if bad, ok := takeMark(m); ok {
		return bad.err(m.(proto.Message).ProtoReflect().Descriptor().FullName())
	}
	return nil
}
