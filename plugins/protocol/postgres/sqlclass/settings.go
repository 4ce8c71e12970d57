package sqlclass

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// TimeoutSettings are the session settings whose values the broker holds under a ceiling per target:
// at 0 (off), or very high, an agent's statement, lock wait or idle transaction could hold locks and
// connections without end.
var TimeoutSettings = []string{"statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"}

// SettingValue is one SET or RESET of a timeout setting.
type SettingValue struct {
	Name string // lower case, one of TimeoutSettings
	// Default marks SET ... TO DEFAULT and RESET, which return to the session's value from its start.
	Default bool
	// Current marks SET ... FROM CURRENT, which keeps the value in force.
	Current bool
	// Value is the value as written (for errors), and Millis what PostgreSQL reads it as (before it
	// rounds to whole milliseconds); Err says why it could not be read.
	Value  string
	Millis float64
	Err    error
}

// SettingValues parses sql and returns the SETs and RESETs of timeout settings in it, with their
// values. Classification cannot carry these: the cache shares one classification among statements
// that differ only in literals.
func SettingValues(sql string) ([]SettingValue, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParse, err)
	}
	var out []SettingValue
	for _, raw := range tree.Stmts {
		s := raw.Stmt.GetVariableSetStmt()
		if s == nil {
			continue
		}
		name := strings.ToLower(s.Name)
		if !isTimeoutSetting(name) {
			continue
		}
		v := SettingValue{Name: name}
		switch s.Kind {
		case pg.VariableSetKind_VAR_SET_DEFAULT, pg.VariableSetKind_VAR_RESET:
			v.Default = true
		case pg.VariableSetKind_VAR_SET_CURRENT:
			v.Current = true
		case pg.VariableSetKind_VAR_SET_VALUE:
			v.Value, v.Millis, v.Err = settingArg(s.Args)
		default:
			v.Err = errors.New("this form of SET is not understood")
		}
		out = append(out, v)
	}
	return out, nil
}

func isTimeoutSetting(name string) bool {
	for _, t := range TimeoutSettings {
		if t == name {
			return true
		}
	}
	return false
}

// settingArg reads SET's one argument: an integer or decimal number of milliseconds, or a string
// that ParseTimeout reads.
func settingArg(args []*pg.Node) (string, float64, error) {
	if len(args) != 1 {
		return "", 0, errors.New("it takes exactly one value")
	}
	c := args[0].GetAConst()
	switch {
	case c == nil || c.Isnull:
		return "", 0, errors.New("its value is not a constant")
	case c.GetIval() != nil:
		v := c.GetIval().Ival
		return strconv.Itoa(int(v)), float64(v), nil
	case c.GetFval() != nil:
		ms, err := ParseTimeout(c.GetFval().Fval)
		return c.GetFval().Fval, ms, err
	case c.GetSval() != nil:
		ms, err := ParseTimeout(c.GetSval().Sval)
		return c.GetSval().Sval, ms, err
	}
	return "", 0, errors.New("its value is not a number or a duration")
}

// timeUnits are PostgreSQL's units for time settings, in milliseconds.
var timeUnits = map[string]float64{"us": 0.001, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}

// maxTimeoutText bounds a timeout value's text.
const maxTimeoutText = 64

// ParseTimeout reads a timeout setting's value as PostgreSQL does, in milliseconds: a decimal number,
// optionally followed by a unit (us, ms, s, min, h, d). It accepts a strict subset of what the server
// accepts (no sign, exponent, hexadecimal or octal): what it reads, the server reads as the same or a
// smaller number (a leading zero makes the server read octal), never as zero when this is not.
// Anything else is an error, and the statement is refused.
func ParseTimeout(s string) (float64, error) {
	if len(s) > maxTimeoutText {
		return 0, errors.New("its value is too long")
	}
	t := strings.Trim(s, " \t\n\r\f\v")
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimLeft(t[i:], " \t\n\r\f\v")
	if num == "" || strings.Count(num, ".") > 1 || num == "." {
		return 0, fmt.Errorf("%q is not a duration: write a whole number of milliseconds, or a number and a unit (us, ms, s, min, h, d) such as '30s'", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	mult := 1.0
	if unit != "" {
		m, ok := timeUnits[unit]
		if !ok {
			return 0, fmt.Errorf("%q has an unknown unit %q: use us, ms, s, min, h or d", s, unit)
		}
		mult = m
	}
	return v * mult, nil
}
