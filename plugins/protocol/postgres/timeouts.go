package postgres

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// Timeouts are a target's limits on how long an agent's session may hold the database: the ceilings
// of the timeouts it may set, and how long it may sit idle in a transaction before the broker ends it.
// Agents may set statement_timeout, lock_timeout and idle_in_transaction_session_timeout only to a
// value from 1ms up to the ceiling (0 turns a timeout off), with SET, SET LOCAL or a startup
// parameter; set_config is an admin action. Each session's backend starts with statement_timeout and
// lock_timeout at their ceilings (or the value the client asked for at startup), so that RESET and SET
// ... TO DEFAULT return to a value within them.
type Timeouts struct {
	// Statement is the ceiling of statement_timeout. Default DefaultStatementTimeout.
	Statement time.Duration
	// Lock is the ceiling of lock_timeout. Default DefaultLockTimeout.
	Lock time.Duration
	// IdleInTransaction is how long a session may be idle in a transaction before the broker ends it,
	// and the ceiling of idle_in_transaction_session_timeout. Default DefaultIdleInTransaction.
	IdleInTransaction time.Duration
}

// Default timeouts.
const (
	DefaultStatementTimeout  = 5 * time.Minute
	DefaultLockTimeout       = time.Minute
	DefaultIdleInTransaction = 3 * time.Minute
)

// MaxTimeout is the largest value PostgreSQL takes for a timeout setting (INT_MAX milliseconds).
const MaxTimeout = math.MaxInt32 * time.Millisecond

// Validate fills in defaults and rejects values PostgreSQL could not take.
func (t *Timeouts) Validate() error {
	for _, f := range []struct {
		d    *time.Duration
		def  time.Duration
		name string
	}{{&t.Statement, DefaultStatementTimeout, "statement_timeout"}, {&t.Lock, DefaultLockTimeout, "lock_timeout"},
		{&t.IdleInTransaction, DefaultIdleInTransaction, "idle_in_transaction"}} {
		if *f.d == 0 {
			*f.d = f.def
		}
		if *f.d < time.Millisecond || *f.d > MaxTimeout {
			return fmt.Errorf("postgres: the %s ceiling is %s; it must be from 1ms to %s", f.name, *f.d, MaxTimeout)
		}
	}
	return nil
}

// ceiling is the ceiling of one of sqlclass.TimeoutSettings.
func (t Timeouts) ceiling(name string) time.Duration {
	switch name {
	case "statement_timeout":
		return t.Statement
	case "lock_timeout":
		return t.Lock
	default:
		return t.IdleInTransaction
	}
}

// check refuses value (as written, read as ms milliseconds) for setting name unless it is within
// 1ms and the ceiling. PostgreSQL rounds to whole milliseconds: anything from 1 rounds to at least 1.
func (t Timeouts) check(name, value string, ms float64) error {
	limit := t.ceiling(name)
	switch {
	case ms == 0:
		return fmt.Errorf("%s = %s denied: 0 turns the timeout off; this target allows %s from 1ms up to %s", name, value, name, limit)
	case ms < 1:
		return fmt.Errorf("%s = %s denied: it is less than 1ms, which PostgreSQL rounds to 0 (off); this target allows %s from 1ms up to %s", name, value, name, limit)
	case ms > float64(limit/time.Millisecond):
		return fmt.Errorf("%s = %s denied: it is above this target's ceiling of %s for %s", name, value, limit, name)
	}
	return nil
}

// refusedTimeout is why a statement setting a timeout outside its ceiling was refused.
const refusedTimeout = "a timeout outside the target's ceiling"

// checkSettings refuses a statement string that sets a timeout outside its ceiling, or to a value the
// broker cannot read. The values are read from the text, since classification is shared among
// statements that differ only in literals.
func (s *session) checkSettings(text string, sts []sqlclass.Statement) *refusal {
	any := false
	for _, st := range sts {
		any = any || len(st.Settings) > 0
	}
	if !any {
		return nil
	}
	vs, err := sqlclass.SettingValues(text)
	if err != nil {
		return refused(errStatementDenied("svidbroker: statement denied: it does not parse as PostgreSQL SQL, and what the broker cannot parse it does not run"), refusedUnparsed)
	}
	for _, v := range vs {
		if v.Default || v.Current {
			continue // the session's value from its start, within the ceiling, or the one in force
		}
		err := v.Err
		if err == nil {
			err = s.timeouts.check(v.Name, v.Value, v.Millis)
		} else {
			err = fmt.Errorf("SET %s denied: %w; this target allows %s from 1ms up to %s", v.Name, err, v.Name, s.timeouts.ceiling(v.Name))
		}
		if err != nil {
			return refused(errStatementDenied("svidbroker: "+err.Error()), refusedTimeout)
		}
	}
	return nil
}

// startupTimeouts takes the timeout settings out of a client's startup parameters, checks them, and
// returns the other parameters and the timeouts the backend session starts with: the client's, or
// else the ceilings of statement_timeout and lock_timeout. idle_in_transaction_session_timeout is left
// to the database's default unless the client sets it: the broker's own limit ends an idle
// transaction, and a backend timeout at that limit would end it first, without the broker's record.
func (t Timeouts) startupTimeouts(client map[string]string) (rest, set map[string]string, err error) {
	rest, set = map[string]string{}, map[string]string{
		"statement_timeout": strconv.FormatInt(t.Statement.Milliseconds(), 10),
		"lock_timeout":      strconv.FormatInt(t.Lock.Milliseconds(), 10),
	}
	for k, v := range client {
		name := strings.ToLower(k)
		if !isTimeoutSetting(name) {
			rest[k] = v
			continue
		}
		ms, err := sqlclass.ParseTimeout(v)
		if err != nil {
			return nil, nil, fmt.Errorf("startup parameter %s denied: %v; this target allows %s from 1ms up to %s", name, err, name, t.ceiling(name))
		}
		if err := t.check(name, v, ms); err != nil {
			return nil, nil, errors.New("startup parameter " + err.Error())
		}
		set[name] = v
	}
	return rest, set, nil
}

func isTimeoutSetting(name string) bool {
	for _, t := range sqlclass.TimeoutSettings {
		if t == name {
			return true
		}
	}
	return false
}
