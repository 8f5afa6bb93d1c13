// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // as the daemon binary does

	"github.com/tollgate-dev/tollgate/policy"
)

// TestDecideTimeWindow: a rule with time windows applies only inside them,
// across midnight and in its own time zone; the decision says when it must
// be made again.
func TestDecideTimeWindow(t *testing.T) {
	cfg := policy.Config{Rules: []policy.Rule{
		{ID: "office-ddl", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassDDL},
			Time: []policy.Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "09:00", To: "18:00", TZ: "Europe/Berlin"}}}},
		{ID: "night-freeze", Action: policy.ActionDeny, When: policy.Conditions{Classes: []policy.Class{policy.ClassSelect},
			Time: []policy.Window{{Days: []string{"fri"}, From: "22:00", To: "06:00"}}}},
		{ID: "reads", Action: policy.ActionAllow, When: policy.Conditions{Classes: []policy.Class{policy.ClassSelect}}},
	}}
	e := policy.NewEngine(&cfg)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	ddl := func(at time.Time) policy.Decision {
		return e.Decide(policy.Request{Classes: []policy.Class{policy.ClassDDL}, Time: at})
	}
	sel := func(at time.Time) policy.Decision {
		return e.Decide(policy.Request{Classes: []policy.Class{policy.ClassSelect}, Time: at})
	}
	wed := time.Date(2026, 11, 25, 0, 0, 0, 0, berlin) // a Wednesday
	for _, tc := range []struct {
		name string
		d    policy.Decision
		want policy.Action
	}{
		{"wednesday 10:00 Berlin", ddl(wed.Add(10 * time.Hour)), policy.ActionAllow},
		{"wednesday 08:59 Berlin", ddl(wed.Add(8*time.Hour + 59*time.Minute)), policy.ActionDeny},
		{"wednesday 18:00 Berlin (end excluded)", ddl(wed.Add(18 * time.Hour)), policy.ActionDeny},
		{"saturday 10:00 Berlin", ddl(wed.AddDate(0, 0, 3).Add(10 * time.Hour)), policy.ActionDeny},
		{"friday 23:00 UTC", sel(time.Date(2026, 11, 27, 23, 0, 0, 0, time.UTC)), policy.ActionDeny},
		{"saturday 05:59 UTC (the night after friday)", sel(time.Date(2026, 11, 28, 5, 59, 0, 0, time.UTC)), policy.ActionDeny},
		{"saturday 06:00 UTC", sel(time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)), policy.ActionAllow},
		{"friday 05:00 UTC (thursday night is not listed)", sel(time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)), policy.ActionAllow},
	} {
		if tc.d.Action != tc.want {
			t.Errorf("%s: %s (rule %q), want %s", tc.name, tc.d.Action, tc.d.Rule, tc.want)
		}
	}
	// Made at 10:00 Berlin on a Wednesday, the decision holds until the
	// next boundary of any window: 18:00 Berlin.
	if got, want := ddl(wed.Add(10*time.Hour)).ValidUntil, wed.Add(18*time.Hour); !got.Equal(want) {
		t.Errorf("ValidUntil %v, want %v", got, want)
	}
	plain := policy.NewEngine(&policy.Config{Rules: cfg.Rules[2:]})
	if d := plain.Decide(policy.Request{Classes: []policy.Class{policy.ClassSelect}}); !d.ValidUntil.IsZero() {
		t.Errorf("no time windows: ValidUntil %v, want zero", d.ValidUntil)
	}
}

func TestTimeWindowValidation(t *testing.T) {
	for _, tc := range []struct {
		w    policy.Window
		want string
	}{
		{policy.Window{From: "9:00", To: "18:00"}, `from: "9:00" is not HH:MM`},
		{policy.Window{From: "09:00", To: "25:00"}, `to: "25:00" is not a time of day`},
		{policy.Window{From: "24:00", To: "06:00"}, `from: "24:00" is not a time of day`},
		{policy.Window{From: "09:00", To: "09:00"}, "from and to are both 09:00"},
		{policy.Window{Days: []string{"monday"}, From: "09:00", To: "10:00"}, `unknown day "monday"`},
		{policy.Window{From: "09:00", To: "10:00", TZ: "Mars/Olympus"}, "tz: unknown time zone Mars/Olympus"},
	} {
		cfg := policy.Default()
		cfg.Rules = []policy.Rule{{ID: "r", Action: policy.ActionAllow, When: policy.Conditions{Time: []policy.Window{tc.w}}}}
		err := cfg.Validate()
		if !errors.Is(err, policy.ErrWindow) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rules[0].when.time[0]") {
			t.Errorf("%+v: %v, want rules[0].when.time[0] ... %s", tc.w, err, tc.want)
		}
	}
	ok := policy.Default()
	ok.Rules = []policy.Rule{{ID: "r", Action: policy.ActionAllow,
		When: policy.Conditions{Time: []policy.Window{{From: "00:00", To: "24:00"}, {Days: []string{"Sat", "sun"}, From: "22:00", To: "02:00"}}}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid windows refused: %v", err)
	}
}
