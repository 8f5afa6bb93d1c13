// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type seen struct {
	route   string
	status  int
	records int
}

type recordingObserver struct{ got []seen }

func (o *recordingObserver) Answered(route string, status int, _ time.Duration, records int) {
	o.got = append(o.got, seen{route, status, records})
}

// TestObserverSeesAnswers: each answered request reaches the observer with
// its route and the status the client got.
func TestObserverSeesAnswers(t *testing.T) {
	obs := &recordingObserver{}
	srv := httptest.NewServer(NewServer(nil, nil, obs).Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+PathEnroll, "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if len(obs.got) != 1 || obs.got[0] != (seen{"enroll", http.StatusBadRequest, 0}) {
		t.Fatalf("observer saw %+v", obs.got)
	}
}
