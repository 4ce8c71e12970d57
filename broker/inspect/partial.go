package inspect

// appendPartial is the partial strategy: appendPartialText's output, with an ASCII value (most are:
// identifiers, numbers, addresses) masked in one pass over its bytes, without decoding runes through
// the Unicode tables. Any other value goes to appendPartialText. FuzzPartialASCII holds the two to
// the same output.
func appendPartial(dst, v []byte) []byte {
	alnum, at, ats := 0, -1, 0
	for i, c := range v {
		switch {
		case c >= 0x80:
			return appendPartialText(dst, v)
		case asciiAlnum(c):
			alnum++
		case c == '@':
			if ats == 0 {
				at = i
			}
			ats++
		}
	}
	if ats == 1 && at > 0 && asciiDomain(v[at+1:]) {
		// An email address: its first character and its domain.
		return append(append(append(dst, v[0]), redacted...), v[at:]...)
	}
	keep := 4
	if alnum <= 2*keep {
		keep = alnum / 4 // short values show at most a quarter
	}
	hide := alnum - keep // the first letters and digits
	n := len(dst)
	dst = append(dst, v...)
	for i := n; hide > 0; i++ {
		if asciiAlnum(dst[i]) {
			dst[i] = '*'
			hide--
		}
	}
	return dst
}

// asciiAlnum reports whether c is an ASCII letter or digit: for ASCII, what unicode.IsLetter and
// unicode.IsDigit accept.
func asciiAlnum(c byte) bool { return c-'0' < 10 || (c|0x20)-'a' < 26 }

// asciiDomain is emailAt's test of an ASCII domain: dotted, neither starting nor ending with a dot,
// of letters, digits, hyphens and dots only.
func asciiDomain(d []byte) bool {
	if len(d) == 0 || d[0] == '.' || d[len(d)-1] == '.' {
		return false
	}
	dot := false
	for _, c := range d {
		switch {
		case c == '.':
			dot = true
		case c == '-' || asciiAlnum(c):
		default:
			return false
		}
	}
	return dot
}
