package pin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
)

// Digest is "sha256:<hex>" of the canonical encoding of d: the JSON object
//
//	{"annotations":A,"description":D,"inputSchema":I,"name":N,"outputSchema":O,"title":T}
//
// with a member left out when its value is empty (an empty string, or a schema or annotations that are
// absent or null), where every object, at every depth, has its keys sorted by their bytes (UTF-8), no
// whitespace is written between tokens, strings are written as Go's encoding/json escapes them (", \,
// control characters, <, >, &, U+2028 and U+2029 as escapes; everything else as UTF-8), and numbers are
// written exactly as they appear in the definition (FromTool makes them the SDK client's spelling).
// Re-encoding a schema (reordering keys, adding or removing whitespace, escaping differently) does not
// change its digest; changing any name, string, number, key or annotation does.
//
// A definition that cannot be encoded canonically (see Definition.Validate) has the digest of its raw
// fields under a separate prefix: never equal to a valid definition's, and never accepted by Store.
func Digest(d Definition) string {
	dig, _ := digest(d)
	return dig
}

// digest is Digest, and the reason d is not canonical.
func digest(d Definition) (string, error) {
	b, err := canonical(d)
	if err != nil {
		h := sha256.New()
		io.WriteString(h, "svidbroker pin: not canonical\x00")
		for _, f := range [][]byte{[]byte(d.Name), []byte(d.Title), []byte(d.Description), d.InputSchema, d.OutputSchema, d.Annotations} {
			fmt.Fprintf(h, "%d:", len(f))
			h.Write(f)
		}
		return "sha256:" + hex.EncodeToString(h.Sum(nil)), err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// canonical is the canonical encoding of d (see Digest).
func canonical(d Definition) ([]byte, error) {
	if n := len(d.InputSchema) + len(d.OutputSchema) + len(d.Annotations) + len(d.Description) + len(d.Title) + len(d.Name); n > MaxDefinitionBytes {
		return nil, fmt.Errorf("pin: tool %q: a definition of %d bytes is over the limit of %d", clip(d.Name), n, MaxDefinitionBytes)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	member := func(key string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeString(&b, key)
		b.WriteByte(':')
	}
	// Keys in sorted order.
	raws := []struct {
		key string
		raw json.RawMessage
		str string
	}{
		{key: "annotations", raw: d.Annotations},
		{key: "description", str: d.Description},
		{key: "inputSchema", raw: d.InputSchema},
		{key: "name", str: d.Name},
		{key: "outputSchema", raw: d.OutputSchema},
		{key: "title", str: d.Title},
	}
	for _, m := range raws {
		if m.raw == nil {
			if m.str == "" {
				continue
			}
			if !utf8.ValidString(m.str) {
				return nil, fmt.Errorf("pin: tool %q: %s is not valid UTF-8", clip(d.Name), m.key)
			}
			member(m.key)
			writeString(&b, m.str)
			continue
		}
		v, err := canonicalValue(m.raw)
		if err != nil {
			return nil, fmt.Errorf("pin: tool %q: %s: %w", clip(d.Name), m.key, err)
		}
		if v == nil {
			continue
		}
		member(m.key)
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// canonicalValue is the canonical encoding of one JSON value; nil for an empty or null value.
func canonicalValue(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	if !utf8.Valid(raw) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b bytes.Buffer
	if err := writeValue(&b, dec, 0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	if b.String() == "null" {
		return nil, nil
	}
	return b.Bytes(), nil
}

// writeValue reads the next value of dec and writes it canonically.
func writeValue(b *bytes.Buffer, dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxDepth {
			return fmt.Errorf("nested deeper than %d", MaxDepth)
		}
		switch t {
		case '[':
			b.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				if err := writeValue(b, dec, depth+1); err != nil {
					return err
				}
			}
			b.WriteByte(']')
		case '{':
			type member struct {
				key string
				val []byte
			}
			var ms []member
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return fmt.Errorf("not valid JSON: %w", err)
				}
				k, ok := kt.(string)
				if !ok {
					return errors.New("not valid JSON: an object key is not a string")
				}
				if seen[k] {
					return fmt.Errorf("key %q appears twice in one object", clip(k))
				}
				seen[k] = true
				var vb bytes.Buffer
				if err := writeValue(&vb, dec, depth+1); err != nil {
					return err
				}
				ms = append(ms, member{k, vb.Bytes()})
			}
			slices.SortFunc(ms, func(x, y member) int { return bytes.Compare([]byte(x.key), []byte(y.key)) })
			b.WriteByte('{')
			for i, m := range ms {
				if i > 0 {
					b.WriteByte(',')
				}
				writeString(b, m.key)
				b.WriteByte(':')
				b.Write(m.val)
			}
			b.WriteByte('}')
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return fmt.Errorf("not valid JSON: %w", err)
		}
	case string:
		writeString(b, t)
	case json.Number:
		b.WriteString(string(t))
	case bool:
		if t {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case nil:
		b.WriteString("null")
	}
	return nil
}

// writeString writes s as encoding/json does.
func writeString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // a string always encodes
	b.Write(q)
}
