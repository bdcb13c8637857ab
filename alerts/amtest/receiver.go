package amtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Message is one webhook notification, in Alertmanager's webhook format
// (version 4, as documented for webhook_config).
type Message struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"` // firing or resolved
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Alert is one alert of a webhook notification.
type Alert struct {
	Status       string            `json:"status"` // firing or resolved
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Receiver is a webhook endpoint for Alertmanager that keeps every
// notification it receives.
type Receiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	msgs    []Message
	changed chan struct{} // closed and replaced on every message
}

// NewReceiver starts a Receiver on a loopback port; it is closed when the
// test ends. A payload that is not a webhook message fails the test.
func NewReceiver(t testing.TB) *Receiver {
	r := &Receiver{changed: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m Message
		if err := json.NewDecoder(req.Body).Decode(&m); err != nil {
			t.Errorf("amtest: webhook payload: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// URL returns the webhook URL to give Alertmanager.
func (r *Receiver) URL() string {
	return r.srv.URL + "/webhook"
}

// Messages returns the notifications received so far, oldest first.
func (r *Receiver) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// Alerts returns every alert of every notification received so far.
func (r *Receiver) Alerts() []Alert {
	var out []Alert
	for _, m := range r.Messages() {
		out = append(out, m.Alerts...)
	}
	return out
}

// Wait returns the first alert received (before or during the call) for
// which match is true, or ctx's error. It wakes on each new notification; it
// never sleeps.
func (r *Receiver) Wait(ctx context.Context, match func(Alert) bool) (Alert, error) {
	seen := 0
	for {
		r.mu.Lock()
		msgs, changed := r.msgs[seen:], r.changed
		seen = len(r.msgs)
		r.mu.Unlock()
		for _, m := range msgs {
			for _, a := range m.Alerts {
				if match(a) {
					return a, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return Alert{}, ctx.Err()
		case <-changed:
		}
	}
}

// Labeled returns a match for Wait: an alert with the status ("firing",
// "resolved", or "" for either) whose labels include every name and value
// of labels.
func Labeled(status string, labels map[string]string) func(Alert) bool {
	return func(a Alert) bool {
		if status != "" && a.Status != status {
			return false
		}
		for k, v := range labels {
			if a.Labels[k] != v {
				return false
			}
		}
		return true
	}
}
