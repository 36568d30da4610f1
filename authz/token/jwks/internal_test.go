package jwks

import (
	"net/http"
	"testing"
	"time"
)

func TestLifetime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
		wantOK bool
	}{
		{name: "nothing", header: http.Header{}},
		{name: "max-age", header: http.Header{"Cache-Control": {"public, max-age=600"}}, want: 10 * time.Minute, wantOK: true},
		{name: "max-age less age", header: http.Header{"Cache-Control": {"max-age=600"}, "Age": {"100"}}, want: 500 * time.Second, wantOK: true},
		{name: "age over max-age", header: http.Header{"Cache-Control": {"max-age=60"}, "Age": {"100"}}, want: 0, wantOK: true},
		{name: "quoted max-age", header: http.Header{"Cache-Control": {`max-age="60"`}}, want: time.Minute, wantOK: true},
		{name: "case and spacing", header: http.Header{"Cache-Control": {"Public ,  MAX-AGE=60"}}, want: time.Minute, wantOK: true},
		{name: "no-cache wins", header: http.Header{"Cache-Control": {"max-age=600", "no-cache"}}, want: 0, wantOK: true},
		{name: "no-store", header: http.Header{"Cache-Control": {"no-store"}}, want: 0, wantOK: true},
		{name: "bad max-age", header: http.Header{"Cache-Control": {"max-age=soon"}}, want: 0, wantOK: true},
		{name: "huge max-age", header: http.Header{"Cache-Control": {"max-age=99999999999999999999"}}, want: 0, wantOK: true},
		{name: "max-age beats expires", header: http.Header{"Cache-Control": {"max-age=60"}, "Expires": {now.Add(time.Hour).Format(http.TimeFormat)}}, want: time.Minute, wantOK: true},
		{name: "expires from date", header: http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}, "Date": {now.Add(-time.Hour).Format(http.TimeFormat)}}, want: 2 * time.Hour, wantOK: true},
		{name: "expires from now", header: http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}}, want: time.Hour, wantOK: true},
		{name: "expires in the past", header: http.Header{"Expires": {now.Add(-time.Hour).Format(http.TimeFormat)}}, want: 0, wantOK: true},
		{name: "invalid expires", header: http.Header{"Expires": {"0"}}, want: 0, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := lifetime(tc.header, now)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("lifetime = %s, %v; want %s, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestScheduleBounds(t *testing.T) {
	m := &Manager{opts: Options{MinRefresh: time.Minute, MaxRefresh: time.Hour}}
	for _, tc := range []struct {
		lifetime time.Duration
		ok       bool
		want     time.Duration
	}{
		{ok: false, want: time.Hour},
		{lifetime: 0, ok: true, want: time.Minute},
		{lifetime: 5 * time.Second, ok: true, want: time.Minute},
		{lifetime: 10 * time.Minute, ok: true, want: 10 * time.Minute},
		{lifetime: 48 * time.Hour, ok: true, want: time.Hour},
	} {
		if got := m.schedule(tc.lifetime, tc.ok); got != tc.want {
			t.Errorf("schedule(%s, %v) = %s, want %s", tc.lifetime, tc.ok, got, tc.want)
		}
	}
	m.jitter = jitter
	for range 100 {
		if got := m.schedule(10*time.Minute, true); got > 10*time.Minute || got < 9*time.Minute {
			t.Fatalf("jittered schedule = %s, want within [9m, 10m]", got)
		}
		if got := m.schedule(0, true); got != time.Minute {
			t.Fatalf("jittered schedule at the minimum = %s, want 1m", got)
		}
	}
}
