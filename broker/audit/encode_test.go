package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// fuzzRecord builds a record whose every field comes from the fuzzer's values.
func fuzzRecord(s1, s2, s3 string, n int64, flags uint8) Record {
	rec := Record{Time: time.Unix(0, n).UTC(), Kind: s1, Session: s2}
	if flags&1 != 0 {
		rec.SPIFFEID, rec.Target, rec.Remote, rec.LeaseID, rec.Error = s3, s1, s2, s3, s1
	}
	if flags&2 != 0 {
		rec.Decision = &Decision{ID: s1, Action: s2, Resource: s3, Allow: flags&4 != 0, Policies: []string{s1, s3},
			Approval: s2, Record: s3, Mask: s1, PolicySet: s2, ErrorPolicy: s3}
	}
	if flags&8 != 0 {
		rec.Statement = &Statement{Protocol: s1, Text: s2, Name: s3, Kinds: []string{s1}, Params: []string{s2, s3}, Masked: []string{}}
	}
	if flags&16 != 0 {
		v := s3
		rec.Result = &Result{Tag: s1, Rows: n, Bytes: -n, Unit: s2, Columns: []string{s2}, Data: [][]*string{{&v, nil}, nil, {}}, Truncated: flags&4 != 0}
	}
	if flags&32 != 0 {
		rec.Detail = map[string]string{s1: s2, s3: s1, "reason": s3}
	}
	if flags&64 != 0 {
		rec.Time = time.Unix(0, n).In(time.FixedZone("x", 3600)) // json.Marshal's own way
	}
	return rec
}

// FuzzEncodeRecord holds encodeRecord to json.Marshal, byte for byte.
func FuzzEncodeRecord(f *testing.F) {
	f.Add("statement", "s1", "SELECT '<&>' \u2028 \x00\x1f\x7f", int64(1700000000123456789), uint8(255))
	f.Add("result", "\xff\xfe", "\"\\\b\f\n\r\t", int64(0), uint8(30))
	f.Add("", "", "", int64(-62135596800000000), uint8(0))
	f.Fuzz(func(t *testing.T, s1, s2, s3 string, n int64, flags uint8) {
		rec := fuzzRecord(s1, s2, s3, n, flags)
		want, wantErr := json.Marshal(&rec)
		got, err := encodeRecord(&rec)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("encodeRecord:\n%s (%v)\njson.Marshal:\n%s (%v)", got, err, want, wantErr)
		}
	})
}

func BenchmarkEncodeRecord(b *testing.B) {
	rec := Record{Time: time.Now().UTC(), Kind: KindStatement, Session: "0123456789abcdef", SPIFFEID: "spiffe://example.org/agent/analyst",
		Target: "shop", Decision: &Decision{ID: "d-1", Action: "sql", Resource: `Target::"shop"`, Allow: true, Policies: []string{"analyst-select"}, PolicySet: "abc"},
		Statement: &Statement{Protocol: "simple", Text: "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;", Kinds: []string{"select"}}}
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&rec)
		}
	})
	b.Run("encodeRecord", func(b *testing.B) {
		for b.Loop() {
			_, _ = encodeRecord(&rec)
		}
	})
}
