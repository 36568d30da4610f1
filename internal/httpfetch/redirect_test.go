package httpfetch_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/verdict-pdp/verdict/internal/httpfetch"
)

// TestRedirectKeepsCredentialsOnTheirHost: headers the caller set (an API
// key for the bundle server) follow a redirect on the same host, and are
// dropped on a redirect to another host, which only gets the harmless ones,
// however the caller spelled their names.
func TestRedirectKeepsCredentialsOnTheirHost(t *testing.T) {
	seen := make(chan http.Header, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Write([]byte("doc"))
	}))
	defer other.Close()
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/final":
			seen <- r.Header.Clone()
			w.Write([]byte("doc"))
		default:
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
		}
	}))
	defer first.Close()
	client := httpfetch.NewClient(nil)
	header := http.Header{"X-Api-Key": {"k3y"}, "Authorization": {"Bearer t0ken"}, "Accept": {"application/gzip"},
		"private-token": {"p4t"}, "X-UPLOAD-KEY": {"u9"}} // keyed as written, not canonical

	if _, err := httpfetch.Get(t.Context(), client, httpfetch.Request{URL: first.URL + "/same", Header: header}); err != nil {
		t.Fatal(err)
	}
	if h := <-seen; h.Get("X-Api-Key") != "k3y" || h.Get("Authorization") != "Bearer t0ken" || h.Get("Private-Token") != "p4t" || h.Get("X-Upload-Key") != "u9" {
		t.Errorf("same-host redirect lost the credentials: %v", h)
	}
	if _, err := httpfetch.Get(t.Context(), client, httpfetch.Request{URL: first.URL + "/away", Header: header}); err != nil {
		t.Fatal(err)
	}
	if h := <-seen; h.Get("X-Api-Key") != "" || h.Get("Authorization") != "" || h.Get("Private-Token") != "" || h.Get("X-Upload-Key") != "" || h.Get("Accept") != "application/gzip" {
		t.Errorf("another host got %v", h)
	}
}
