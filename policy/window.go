// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrWindow means a time window in a rule's conditions is malformed.
var ErrWindow = errors.New("invalid time window")

// A Window is a recurring span of wall-clock time: from From to To on
// Days, in the time zone TZ. A window whose To is not after its From
// crosses midnight: it starts on one of Days and ends the next morning.
type Window struct {
	// Days are the days a window starts on: mon, tue, wed, thu, fri,
	// sat, sun. Empty means every day.
	Days []string `yaml:"days,omitempty"`
	// From is the start, "HH:MM", inclusive.
	From string `yaml:"from"`
	// To is the end, "HH:MM" or "24:00", exclusive.
	To string `yaml:"to"`
	// TZ is an IANA time zone like "Europe/Berlin"; empty means UTC.
	TZ string `yaml:"tz,omitempty"`
}

// window is a compiled Window.
type window struct {
	days     [7]bool // by time.Weekday
	from, to int     // minutes since midnight
	loc      *time.Location
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// compile checks w and returns its compiled form.
func (w Window) compile() (window, error) {
	var c window
	var errs []error
	if len(w.Days) == 0 {
		c.days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, d := range w.Days {
		wd, ok := weekdays[strings.ToLower(d)]
		if !ok {
			errs = append(errs, fmt.Errorf("%w: unknown day %q (want mon, tue, wed, thu, fri, sat or sun)", ErrWindow, d))
			continue
		}
		c.days[wd] = true
	}
	var err error
	if c.from, err = clock(w.From, false); err != nil {
		errs = append(errs, fmt.Errorf("%w: from: %w", ErrWindow, err))
	}
	if c.to, err = clock(w.To, true); err != nil {
		errs = append(errs, fmt.Errorf("%w: to: %w", ErrWindow, err))
	}
	if err == nil && c.from == c.to {
		errs = append(errs, fmt.Errorf("%w: from and to are both %s (a whole day is 00:00 to 24:00)", ErrWindow, w.From))
	}
	c.loc = time.UTC
	if w.TZ != "" {
		if c.loc, err = time.LoadLocation(w.TZ); err != nil {
			errs = append(errs, fmt.Errorf("%w: tz: %w", ErrWindow, err))
		}
	}
	return c, errors.Join(errs...)
}

// clock parses "HH:MM" into minutes since midnight; "24:00" only as an end.
func clock(s string, end bool) (int, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	switch {
	case h == 24 && m == 0 && end:
		return 24 * 60, nil
	case h < 0 || h > 23 || m < 0 || m > 59:
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return h*60 + m, nil
}

// contains reports whether t falls in the window.
func (w *window) contains(t time.Time) bool {
	t = t.In(w.loc)
	m := t.Hour()*60 + t.Minute()
	if w.from < w.to {
		return w.days[t.Weekday()] && m >= w.from && m < w.to
	}
	// Across midnight: the evening of a listed day, or the morning after.
	return (w.days[t.Weekday()] && m >= w.from) || (w.days[(t.Weekday()+6)%7] && m < w.to)
}

// next returns the first minute boundary after t at which contains may
// change: the next From or To wall-clock time, in the window's zone.
func (w *window) next(t time.Time) time.Time {
	lt := t.In(w.loc)
	midnight := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, w.loc)
	var best time.Time
	for _, m := range []int{w.from, w.to} {
		for day := 0; day <= 1; day++ {
			b := midnight.AddDate(0, 0, day).Add(time.Duration(m) * time.Minute)
			if b.After(t) {
				if best.IsZero() || b.Before(best) {
					best = b
				}
				break
			}
		}
	}
	return best
}

// inWindows reports whether t is in any of ws; no windows means always.
func inWindows(ws []window, t time.Time) bool {
	return len(ws) == 0 || slices.ContainsFunc(ws, func(w window) bool { return w.contains(t) })
}
