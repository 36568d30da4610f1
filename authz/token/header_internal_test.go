package token

import (
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func segment(json string) string { return base64.RawURLEncoding.EncodeToString([]byte(json)) }

// sameParse fails unless the cache's answer for seg is parseHeader's: the
// same header, or an error with the same cause and text.
func sameParse(t testing.TB, c *headerCache, seg string) {
	t.Helper()
	want, wantErr := parseHeader(seg)
	got, err := c.parse(seg)
	if (err == nil) != (wantErr == nil) || (err != nil && (err.Error() != wantErr.Error() || !errors.Is(err, causeOf(wantErr)))) {
		t.Fatalf("%q: error %v, want %v", seg, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: got %+v, want %+v", seg, got, want)
	}
}

// causeOf is the sentinel (ErrMalformed, ErrDisallowedAlg, ...) err wraps.
func causeOf(err error) error {
	for _, cause := range []error{ErrMalformed, ErrDisallowedAlg} {
		if errors.Is(err, cause) {
			return cause
		}
	}
	return err
}

// TestHeaderCacheAgreesWithParse: a header from the cache, on a miss and on
// a hit, is what parsing the segment gives, refusals included (which are
// never kept).
func TestHeaderCacheAgreesWithParse(t *testing.T) {
	long := `{"alg":"RS256","kid":"` + strings.Repeat("k", maxCachedHeaderSize) + `"}`
	for _, tc := range []struct{ name, seg string }{
		{"rs256 kid typ", segment(`{"alg":"RS256","kid":"k1","typ":"JWT"}`)},
		{"no typ", segment(`{"alg":"ES256","kid":"k1"}`)},
		{"typ empty", segment(`{"alg":"ES256","typ":""}`)},
		{"no kid", segment(`{"alg":"HS256"}`)},
		{"longer than kept", segment(long)},
		{"alg none", segment(`{"alg":"none"}`)},
		{"alg NONE", segment(`{"alg":"NONE"}`)},
		{"no alg", segment(`{"kid":"k1"}`)},
		{"alg not a string", segment(`{"alg":256}`)},
		{"unsupported alg", segment(`{"alg":"RS1"}`)},
		{"crit", segment(`{"alg":"RS256","crit":["exp"]}`)},
		{"kid not a string", segment(`{"alg":"RS256","kid":1}`)},
		{"typ not a string", segment(`{"alg":"RS256","typ":null}`)},
		{"not an object", segment(`["alg","RS256"]`)},
		{"null", segment(`null`)},
		{"not json", segment(`{"alg":"RS256"`)},
		{"not base64url", "eyJhbGciOiJSUzI1NiJ9+/"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newHeaderCache()
			sameParse(t, c, tc.seg) // miss
			sameParse(t, c, tc.seg) // hit, when it parses and is short enough
		})
	}
}

// TestHeaderCacheSlotsShared: far more distinct headers than slots, parsed
// through one cache twice over: every answer is its own segment's, however
// the segments share slots.
func TestHeaderCacheSlotsShared(t *testing.T) {
	c := newHeaderCache()
	for range 2 {
		for i := range 20 * headerSlots {
			seg := segment(fmt.Sprintf(`{"alg":"RS256","kid":"k%d"}`, i))
			h, err := c.parse(seg)
			if err != nil || h.kid != fmt.Sprintf("k%d", i) {
				t.Fatalf("header %d: got %+v, %v", i, h, err)
			}
		}
	}
}

// TestHeaderCacheConcurrent: goroutines parsing overlapping sets of headers
// through one cache each get their own segment's header (run with -race).
func TestHeaderCacheConcurrent(t *testing.T) {
	c := newHeaderCache()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				kid := fmt.Sprintf("k%d", (i*7+g)%(3*headerSlots))
				h, err := c.parse(segment(`{"alg":"ES256","kid":"` + kid + `"}`))
				if err != nil || h.kid != kid {
					t.Errorf("got %+v, %v; want kid %s", h, err, kid)
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzHeaderCache: for any segment, the cache answers as parsing does, on
// the first sight and after.
func FuzzHeaderCache(f *testing.F) {
	for _, s := range []string{
		`{"alg":"RS256","kid":"k1","typ":"JWT"}`, `{"alg":"none"}`, `{"alg":"RS256","crit":[]}`,
		`{"alg":"RS256","alg":"none"}`, `{"alg":"EdDSA","kid":"\u006b"}`, `[]`,
	} {
		f.Add(segment(s))
	}
	c := newHeaderCache()
	f.Fuzz(func(t *testing.T, seg string) {
		sameParse(t, c, seg)
		sameParse(t, c, seg)
	})
}
