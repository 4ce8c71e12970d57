package sqlclass

import (
	"testing"
)

func TestParseTimeout(t *testing.T) {
	for _, c := range []struct {
		in   string
		ms   float64
		fail bool
	}{
		{"5000", 5000, false}, {"5s", 5000, false}, {" 5 s ", 5000, false}, {"1.5min", 90000, false},
		{"250ms", 250, false}, {"400us", 0.4, false}, {"2h", 7200000, false}, {"1d", 86400000, false}, {"0", 0, false},
		{"-1", 0, true}, {"0x10", 0, true}, {"1e3", 0, true}, {"5 sec", 0, true}, {"5S", 0, true}, {"", 0, true},
		{".", 0, true}, {"1.2.3", 0, true}, {"inf", 0, true}, {"5s5", 0, true},
	} {
		ms, err := ParseTimeout(c.in)
		if (err != nil) != c.fail || !c.fail && ms != c.ms {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v (fail %t)", c.in, ms, err, c.ms, c.fail)
		}
	}
}

func TestSettingValues(t *testing.T) {
	sts, err := Classify("SET statement_timeout = 0; SET LOCAL lock_timeout TO '2s'; RESET idle_in_transaction_session_timeout; SET work_mem = '4MB'")
	if err != nil {
		t.Fatal(err)
	}
	if got := sts[0].Settings; len(got) != 1 || got[0] != "statement_timeout" {
		t.Errorf("settings %q", got)
	}
	if len(sts[3].Settings) != 0 {
		t.Errorf("work_mem taken for a timeout: %q", sts[3].Settings)
	}
	vs, err := SettingValues("SET statement_timeout = 0; SET LOCAL lock_timeout TO '2s'; RESET idle_in_transaction_session_timeout; SET statement_timeout = 1, 2; SET Statement_Timeout TO DEFAULT; SET lock_timeout = 1.5")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 6 {
		t.Fatalf("%d values: %+v", len(vs), vs)
	}
	want := []SettingValue{
		{Name: "statement_timeout", Value: "0", Millis: 0},
		{Name: "lock_timeout", Value: "2s", Millis: 2000},
		{Name: "idle_in_transaction_session_timeout", Default: true},
	}
	for i, w := range want {
		if vs[i] != w {
			t.Errorf("value %d: %+v, want %+v", i, vs[i], w)
		}
	}
	if vs[3].Err == nil {
		t.Error("two values accepted")
	}
	if !vs[4].Default || vs[4].Name != "statement_timeout" {
		t.Errorf("SET ... TO DEFAULT: %+v", vs[4])
	}
	if vs[5].Err != nil || vs[5].Millis != 1.5 {
		t.Errorf("a decimal number: %+v", vs[5])
	}
}

// FuzzParseTimeout: whatever ParseTimeout reads is a finite, non-negative number of milliseconds.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"0", "5s", "1.5min", "400us", "0x10", "1e3", " 7 d ", "99999999999999999999h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseTimeout(s)
		if err == nil && (ms < 0 || ms != ms || ms > 1e300) {
			t.Fatalf("%q read as %v", s, ms)
		}
	})
}

// FuzzSettingValues: SET statements of any shape either give their values or errors, and every
// statement the classifier marks as setting a timeout has a value read for it.
func FuzzSettingValues(f *testing.F) {
	for _, s := range []string{"SET statement_timeout = 0", "SET LOCAL lock_timeout TO '1s'", "RESET idle_in_transaction_session_timeout",
		"SET statement_timeout FROM CURRENT", "SET statement_timeout = 'x'", "SET statement_timeout = 1, 2", "SELECT 1; SET lock_timeout = 5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		sts, err := Classify(sql)
		if err != nil {
			return
		}
		vs, err := SettingValues(sql)
		if err != nil {
			t.Fatalf("classified but SettingValues failed: %v", err)
		}
		n := 0
		for _, st := range sts {
			n += len(st.Settings)
		}
		if len(vs) < n {
			t.Fatalf("%d settings classified, %d values read", n, len(vs))
		}
	})
}
