package service

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"

	"github.com/otpd/otpd/otp"
)

// TestRecipientLogAttrs: a call's lines carry its shared attributes in
// order, then the line's own, however many the call shares.
func TestRecipientLogAttrs(t *testing.T) {
	t.Parallel()
	rcpt := recipient{channel: otp.SMS, addr: "+14155550123", country: "1"}
	for n := range 5 {
		var buf bytes.Buffer
		s := &Service{log: slog.New(slog.NewJSONHandler(&buf, nil))}
		var more []slog.Attr
		want := []string{"time", "level", "msg", "recipient", "channel", "usage_type"}
		for i := range n {
			k := string(rune('a' + i))
			more = append(more, slog.String(k, k))
			want = append(want, k)
		}
		log := s.recipientLog(rcpt, "sign_in", more...)
		log.InfoContext(context.Background(), "code sent", slog.String("provider", "fake"))
		want = append(want, "provider")
		if got := jsonKeys(t, buf.Bytes()); !slices.Equal(got, want) {
			t.Errorf("%d more: keys %v, want %v", n, got, want)
		}
	}
}

// jsonKeys are the keys of a JSON object, in order.
func jsonKeys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	var keys []string
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}
