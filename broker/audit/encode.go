package audit

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// encodeRecord returns the JSON of rec, byte for byte what json.Marshal gives (FuzzEncodeRecord holds
// it to that), without reflection: every statement writes at least two records, and json.Marshal's
// reflection and allocations were a third of what recording a statement cost. A time json.Marshal
// would refuse or format otherwise (not UTC, a year outside 0–9999) goes through json.Marshal.
func encodeRecord(rec *Record) ([]byte, error) {
	if rec.Time.Location() != time.UTC || rec.Time.Year() < 0 || rec.Time.Year() > 9999 {
		return json.Marshal(rec)
	}
	b := make([]byte, 0, 512)
	b = append(b, `{"time":"`...)
	b = rec.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","kind":`...)
	b = appendJSONString(b, rec.Kind)
	b = append(b, `,"session":`...)
	b = appendJSONString(b, rec.Session)
	b = appendField(b, "spiffe_id", rec.SPIFFEID)
	b = appendField(b, "target", rec.Target)
	b = appendField(b, "remote", rec.Remote)
	if d := rec.Decision; d != nil {
		b = append(b, `,"decision":{"id":`...)
		b = appendJSONString(b, d.ID)
		b = append(b, `,"action":`...)
		b = appendJSONString(b, d.Action)
		b = append(b, `,"resource":`...)
		b = appendJSONString(b, d.Resource)
		b = append(b, `,"allow":`...)
		b = strconv.AppendBool(b, d.Allow)
		b = appendList(b, "policies", d.Policies)
		b = appendField(b, "approval", d.Approval)
		b = appendField(b, "record", d.Record)
		b = appendField(b, "mask", d.Mask)
		b = appendField(b, "policy_set", d.PolicySet)
		b = appendField(b, "error_policy", d.ErrorPolicy)
		b = append(b, '}')
	}
	if st := rec.Statement; st != nil {
		b = append(b, `,"statement":{"protocol":`...)
		b = appendJSONString(b, st.Protocol)
		b = append(b, `,"text":`...)
		b = appendJSONString(b, st.Text)
		b = appendField(b, "name", st.Name)
		b = appendList(b, "kinds", st.Kinds)
		b = appendList(b, "params", st.Params)
		b = appendList(b, "masked", st.Masked)
		b = append(b, '}')
	}
	if r := rec.Result; r != nil {
		b = append(b, `,"result":{"tag":`...)
		b = appendJSONString(b, r.Tag)
		b = append(b, `,"rows":`...)
		b = strconv.AppendInt(b, r.Rows, 10)
		b = append(b, `,"bytes":`...)
		b = strconv.AppendInt(b, r.Bytes, 10)
		b = appendField(b, "unit", r.Unit)
		b = appendList(b, "columns", r.Columns)
		if len(r.Data) > 0 {
			b = append(b, `,"data":[`...)
			for i, row := range r.Data {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendRow(b, row)
			}
			b = append(b, ']')
		}
		if r.Truncated {
			b = append(b, `,"truncated":true`...)
		}
		b = append(b, '}')
	}
	b = appendField(b, "lease_id", rec.LeaseID)
	b = appendField(b, "error", rec.Error)
	if len(rec.Detail) > 0 {
		b = append(b, `,"detail":{`...)
		keys := make([]string, 0, len(rec.Detail))
		for k := range rec.Detail {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, rec.Detail[k])
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// appendField appends ,"name":value for a field with omitempty, when value is not empty.
func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(append(append(b, `,"`...), name...), `":`...)
	return appendJSONString(b, value)
}

// appendList appends ,"name":[...] for a list with omitempty, when it is not empty.
func appendList(b []byte, name string, values []string) []byte {
	if len(values) == 0 {
		return b
	}
	b = append(append(append(b, `,"`...), name...), `":[`...)
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

// appendRow appends a recorded result row: null for a nil row, each value a string or null.
func appendRow(b []byte, row []*string) []byte {
	if row == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range row {
		if i > 0 {
			b = append(b, ',')
		}
		if v == nil {
			b = append(b, "null"...)
		} else {
			b = appendJSONString(b, *v)
		}
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as json.Marshal quotes it: <, > and & escaped for HTML, invalid UTF-8 as
// U+FFFD, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
