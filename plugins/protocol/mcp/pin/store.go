package pin

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Mode says where a target's pins come from.
type Mode string

const (
	// ModeFile: only the tools in the pin file, at their digests.
	ModeFile Mode = "file"
	// ModeFirstSight: the first definition the broker sees of a tool is pinned, in the state directory.
	ModeFirstSight Mode = "first-sight"
)

// Verdict is a Store's answer for one definition.
type Verdict struct {
	OK     bool   // the definition is the pinned one (or was just pinned at first sight)
	Known  bool   // the tool has a pin
	Pinned string // the pinned digest; "" when not Known
	Seen   string // the digest of the definition checked
	// Why says, for the agent and the audit record, what happened and what an operator does about it. It
	// names the tool and the digests, never a description or schema.
	Why string
}

// Store answers for one target's tools. It is safe for concurrent use.
type Store struct {
	target string
	mode   Mode
	state  string // first-sight: the state file
	now    func() time.Time

	mu   sync.Mutex
	pins map[string]Entry
	seen map[string]Entry // first-sight: the pins kept in the state file
}

// NewStore is the store of target's pins. In mode "file", file holds the pins and a tool not in it is
// refused. In mode "first-sight", file (optional) holds pins an operator accepted, and any other tool is
// pinned at its first definition in stateDir/<target>.pins.json, read back here when the broker starts;
// the state directory must be writable, because a pin that cannot be kept is not granted.
func NewStore(target string, mode Mode, file *File, stateDir string) (*Store, error) {
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	s := &Store{target: target, mode: mode, now: time.Now, pins: map[string]Entry{}, seen: map[string]Entry{}}
	if file != nil {
		if file.Target != "" && file.Target != target {
			return nil, fmt.Errorf("pin: the pin file is for target %q, not %q", file.Target, target)
		}
		for _, e := range file.Tools {
			s.pins[e.Name] = e
		}
	}
	switch mode {
	case ModeFile:
		if file == nil {
			return nil, fmt.Errorf("pin: target %q pins tools from a file, and has none: write one with `svidbroker mcp pin %s --accept`", target, target)
		}
	case ModeFirstSight:
		if stateDir == "" {
			return nil, fmt.Errorf("pin: target %q pins tools at first sight, and has no state directory to keep them in", target)
		}
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("pin: target %q: state directory: %w", target, err)
		}
		s.state = filepath.Join(stateDir, target+".pins.json")
		if err := probeWritable(stateDir); err != nil {
			return nil, fmt.Errorf("pin: target %q: the state directory %s cannot be written, so no first sight could be kept: %w", target, stateDir, err)
		}
		f, err := Load(s.state)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, err
		case f.Target != target:
			return nil, fmt.Errorf("pin: %s holds the pins of target %q, not %q", s.state, f.Target, target)
		default:
			for _, e := range f.Tools {
				s.seen[e.Name] = e
				if _, ok := s.pins[e.Name]; !ok {
					s.pins[e.Name] = e
				}
			}
		}
	default:
		return nil, fmt.Errorf("pin: target %q: pin mode %q is not one of %q or %q", target, mode, ModeFile, ModeFirstSight)
	}
	return s, nil
}

// Check says whether d is the pinned definition of its tool. In mode first-sight, a tool with no pin is
// pinned at d, and the pin is on disk before Check says OK.
func (s *Store) Check(d Definition) Verdict {
	seen, err := digest(d)
	v := Verdict{Seen: seen}
	if err == nil {
		err = d.Validate()
	}
	if err != nil {
		v.Why = fmt.Sprintf("the definition of tool %q of target %q cannot be pinned (%s), so the tool is refused",
			clip(d.Name), s.target, trimPkg(err))
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.pins[d.Name]; ok {
		v.Known, v.Pinned = true, e.Digest
		if e.Digest == seen {
			v.OK = true
			return v
		}
		v.Why = fmt.Sprintf("the definition of tool %q of target %q changed since it was pinned at %s (pinned %s, seen %s), so the tool is refused until an operator reviews the new definition and accepts it with `svidbroker mcp pin %s --accept`",
			clip(d.Name), s.target, e.PinnedAt.UTC().Format(time.RFC3339), e.Digest, seen, s.target)
		return v
	}
	if s.mode != ModeFirstSight {
		v.Why = fmt.Sprintf("tool %q of target %q is not in the target's pin file (seen %s), so it is refused until an operator reviews it and pins it with `svidbroker mcp pin %s --accept`",
			clip(d.Name), s.target, seen, s.target)
		return v
	}
	e := Entry{Definition: d, Digest: seen, PinnedAt: s.now().UTC()}
	s.seen[d.Name] = e
	if err := s.flush(); err != nil {
		delete(s.seen, d.Name)
		v.Why = fmt.Sprintf("tool %q of target %q was seen for the first time and its pin could not be kept (%s), so it is refused",
			clip(d.Name), s.target, trimPkg(err))
		return v
	}
	s.pins[d.Name] = e
	v.OK, v.Known, v.Pinned = true, true, seen
	return v
}

// CheckTool is Check of the definition of t, a tool as the go-sdk holds it (FromTool). A tool whose
// definition cannot be read is refused.
func (s *Store) CheckTool(t *mcp.Tool) Verdict {
	d, err := FromTool(t)
	if err != nil {
		name := ""
		if t != nil {
			name = t.Name
		}
		return Verdict{Seen: Digest(d), Why: fmt.Sprintf("the definition of tool %q of target %q cannot be pinned (%s), so the tool is refused",
			clip(name), s.target, trimPkg(err))}
	}
	return s.Check(d)
}

// flush writes the first-sight pins to the state file. s.mu is held.
func (s *Store) flush() error {
	f := &File{Version: Version, Target: s.target}
	for _, e := range s.seen {
		f.Tools = append(f.Tools, e)
	}
	return f.Save(s.state)
}

// Schemas is the input schema of each pinned tool, by name (for the policy schema's MCPArgs).
func (s *Store) Schemas() map[string]json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]json.RawMessage, len(s.pins))
	for name, e := range s.pins {
		out[name] = append(json.RawMessage(nil), e.InputSchema...)
	}
	return out
}

// Pinned is the pinned entry of tool name.
func (s *Store) Pinned(name string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.pins[name]
	return e, ok
}

// checkTarget refuses a target name that could not name a state file.
func checkTarget(t string) error {
	if t == "" || len(t) > 128 || t[0] == '.' {
		return fmt.Errorf("pin: %q is not a target name pins can be kept for", clip(t))
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("pin: target name %q has %q: pins are kept for names of letters, digits, '-', '_' and '.'", clip(t), c)
		}
	}
	return nil
}

// probeWritable creates and removes a file in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func trimPkg(err error) string {
	s := err.Error()
	if len(s) > 5 && s[:5] == "pin: " {
		return s[5:]
	}
	return s
}
