// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"math"
	"testing"
	"time"
)

// appendTime must give AppendFormat's bytes for every instant.
func TestAppendTime(t *testing.T) {
	times := []time.Time{
		{},
		time.Unix(0, 0),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 15, 12, 0, 0, 1, time.UTC),
		time.Date(2026, 12, 6, 21, 30, 0, 123456789, time.FixedZone("x", -7*3600-1800)),
		time.Date(2024, 2, 29, 23, 59, 59, 5, time.UTC),
		time.Unix(math.MaxInt32, 999999999),
		time.Now(),
	}
	for _, tm := range times {
		check(t, tm)
	}
}

func FuzzAppendTime(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(1796592600), int64(123456789))
	f.Add(int64(-62135596800), int64(0))         // year 1
	f.Add(int64(253402300799), int64(999999999)) // 9999-12-31T23:59:59
	f.Add(int64(253402300800), int64(0))         // year 10000
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		check(t, time.Unix(sec, nsec))
	})
}

func check(t *testing.T, tm time.Time) {
	t.Helper()
	want := string(tm.UTC().AppendFormat([]byte("x"), timeLayout))
	if got := string(appendTime([]byte("x"), tm)); got != want {
		t.Fatalf("appendTime(%v) = %q, want %q", tm, got, want)
	}
}

func BenchmarkAppendTime(b *testing.B) {
	tm := time.Now()
	buf := make([]byte, 0, 64)
	b.Run("appendTime", func(b *testing.B) {
		for b.Loop() {
			buf = appendTime(buf[:0], tm)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = tm.UTC().AppendFormat(buf[:0], timeLayout)
		}
	})
}
