package jsonmask

import (
	"errors"
	"fmt"
	"io"

	"github.com/svidbroker/svidbroker/broker/inspect"
)

// Rule masks the values a path reaches with a strategy.
type Rule struct {
	Path     Path
	Strategy inspect.Strategy
}

// Config configures a Filter.
type Config struct {
	// Rules are the fields to mask. A value that several rules reach is masked with the strongest of
	// their strategies (partial < hash < redact < null).
	Rules []Rule
	// Masker applies the strategies, as it does to columns. Required.
	Masker *inspect.Masker
	// MaxDepth is the deepest nesting of objects and arrays accepted. Default 128.
	MaxDepth int
	// MaxToken is the longest object key, number or masked string accepted, in bytes: these are held
	// whole to be compared or masked. Strings that are not masked stream through at any length.
	// Default 1 MiB.
	MaxToken int
}

// Defaults of Config.
const (
	DefaultMaxDepth = 128
	DefaultMaxToken = 1 << 20
)

// ErrInvalid is returned for a body that is not one valid JSON value; ErrLimit for one that exceeds
// MaxDepth or MaxToken. Either way the body must be refused: what was written is a prefix of the
// masked output, never a complete document.
var (
	ErrInvalid = errors.New("jsonmask: invalid JSON")
	ErrLimit   = errors.New("jsonmask: limit exceeded")
)

// Filter masks JSON bodies. It is safe for concurrent use.
type Filter struct {
	rules    []Rule
	masker   *inspect.Masker
	maxDepth int
	maxToken int
	root     []state
	steps    []fstep // every rule's steps, one after another: a state is an index into it
	// names[c] has bit n set when a rule names a key of n bytes (63: 63 or more) starting with c.
	names  [256]uint64
	noSkip bool // tests: walk unmasked and masked subtrees with object and array, not skip
}

// fstep is a rule's step as matching uses it.
type fstep struct {
	name  string
	kind  stepKind
	final bool  // the rule's last step: reaching past it masks the value
	rank  uint8 // the rule's strategy's rank, when final
}

// New returns a filter for cfg. It refuses an unknown strategy, and the hash strategy when the masker
// has no hash key, so that a misconfigured rule fails at load rather than per response.
func New(cfg Config) (*Filter, error) {
	if cfg.Masker == nil {
		return nil, errors.New("jsonmask: Config.Masker is required")
	}
	if cfg.MaxDepth == 0 {
		cfg.MaxDepth = DefaultMaxDepth
	}
	if cfg.MaxToken == 0 {
		cfg.MaxToken = DefaultMaxToken
	}
	if cfg.MaxDepth < 1 || cfg.MaxDepth > 10000 {
		return nil, fmt.Errorf("jsonmask: MaxDepth %d out of range 1..10000", cfg.MaxDepth)
	}
	if cfg.MaxToken < 64 {
		return nil, fmt.Errorf("jsonmask: MaxToken %d is below the minimum of 64 bytes", cfg.MaxToken)
	}
	if len(cfg.Rules) > 1<<16 {
		return nil, fmt.Errorf("jsonmask: %d rules, at most %d", len(cfg.Rules), 1<<16)
	}
	f := &Filter{rules: cfg.Rules, masker: cfg.Masker, maxDepth: cfg.MaxDepth, maxToken: cfg.MaxToken}
	for i, r := range cfg.Rules {
		if len(r.Path.steps) == 0 {
			return nil, fmt.Errorf("jsonmask: rule %d has no path (use ParsePath)", i)
		}
		if rank(r.Strategy) == 0 {
			return nil, fmt.Errorf("jsonmask: field %s: unknown masking strategy %q (partial, hash, redact or null)", r.Path, r.Strategy)
		}
		if _, _, err := cfg.Masker.Mask(r.Strategy, []byte("x")); err != nil {
			return nil, fmt.Errorf("jsonmask: field %s: %w", r.Path, err)
		}
		f.root = append(f.root, state(len(f.steps)))
		for j, sp := range r.Path.steps {
			if sp.name != "" {
				f.names[sp.name[0]] |= 1 << min(len(sp.name), 63)
			}
			f.steps = append(f.steps, fstep{name: sp.name, kind: sp.kind, final: j == len(r.Path.steps)-1, rank: uint8(rank(r.Strategy))})
		}
	}
	return f, nil
}

// rank orders the strategies by strength; 0 is unknown.
func rank(s inspect.Strategy) int {
	switch s {
	case inspect.Partial:
		return 1
	case inspect.Hash:
		return 2
	case inspect.Redact:
		return 3
	case inspect.Null:
		return 4
	}
	return 0
}

// Copy reads one JSON value from src and writes it to dst with the rules' fields masked, returning
// how many values it masked. Everything else is copied byte for byte, whitespace included. It holds
// at most about 2×MaxToken of the body at a time, whatever its size.
//
// On error (ErrInvalid, ErrLimit, or a read or write error) dst has received a prefix of the masked
// output and the caller must abort the response rather than end it normally. Errors name the byte
// offset and the reason, never the body's content.
func (f *Filter) Copy(dst io.Writer, src io.Reader) (masked int, err error) {
	s := newScanner(f, dst, src)
	err = s.run()
	return s.masked, err
}

// Append masks the JSON value src, held whole in memory, as Copy would, and appends the result to
// dst, which must not overlap src. It reads src in place, without Copy's window, so masking many small
// values (an event stream's events) allocates little. It refuses the bodies Copy refuses; a body past
// a limit may be refused for another of its faults than Copy names. On error dst is returned as it
// was given.
func (f *Filter) Append(dst, src []byte) (out []byte, masked int, err error) {
	s := &scanner{f: f, out: dst, sc: f.masker.NewScratch(), buf: src, end: len(src), eof: true, hold: -1}
	if err := s.run(); err != nil {
		return dst, s.masked, err
	}
	return s.out, s.masked, nil
}

// state is a partial match: a rule's path has matched up to the step f.steps[state].
type state uint32

// strategies by rank.
var byRank = [...]inspect.Strategy{"", inspect.Partial, inspect.Hash, inspect.Redact, inspect.Null}

// children returns the states of a container's children, into dst, and the strategy that masks the
// child itself ("" for none). key is the child's decoded key in an object; array says the container is
// an array.
func (f *Filter) children(dst, set []state, array bool, key []byte) ([]state, inspect.Strategy) {
	dst = dst[:0]
	var mask uint8
	for _, st := range set {
		sp := &f.steps[st]
		hit, stay := false, false // stay: a descendant step goes on matching below
		switch sp.kind {
		case stepName:
			hit = !array && string(key) == sp.name
		case stepAnyMember:
			hit = !array
		case stepAnyElement:
			hit = array
		case stepDescendant:
			hit, stay = !array && string(key) == sp.name, true
		}
		if hit {
			if sp.final {
				mask = max(mask, sp.rank)
			} else {
				dst = addState(dst, st+1)
			}
		}
		if stay {
			dst = addState(dst, st)
		}
	}
	return dst, byRank[mask]
}

// namesOnly reports whether every state of set is a step by name or an array's step, so that in an
// object only a key a rule names can match.
func (f *Filter) namesOnly(set []state) bool {
	for _, st := range set {
		if k := f.steps[st].kind; k != stepName && k != stepAnyElement {
			return false
		}
	}
	return true
}

// mayBeNamed reports false for a key that no rule names (by its first byte and length); true means
// only that it may be.
func (f *Filter) mayBeNamed(key []byte) bool {
	return len(key) == 0 || f.names[key[0]]>>min(len(key), 63)&1 != 0
}

// addState appends st to dst unless it is there already.
func addState(dst []state, st state) []state {
	for _, d := range dst {
		if d == st {
			return dst
		}
	}
	return append(dst, st)
}
