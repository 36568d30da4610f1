package jwks

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/verdict-pdp/verdict/internal/atomicfile"
	"github.com/verdict-pdp/verdict/internal/regularfile"
)

// persisted is the file a key set is kept in between runs. It holds public
// keys only.
type persisted struct {
	Issuer  string          `json:"issuer"`
	URL     string          `json:"url,omitempty"`
	ETag    string          `json:"etag,omitempty"`
	SavedAt time.Time       `json:"saved_at"`
	JWKS    json.RawMessage `json:"jwks"`
}

// persistSkew is how far in the future a persisted set's save time may be
// (clocks disagree a little); it then counts as saved now.
const persistSkew = time.Minute

// persistPath names the file in dir of an issuer's set from url (or, with
// url "", from the issuer's discovery document) by a hash of both: any
// issuer string makes a safe file name, and a set is read back only by a
// Manager with the same issuer and the same source. Two configurations
// naming one issuer with different key sources (a test one's mock
// provider, a jwks_url moved away from) share a persist directory without
// trusting each other's keys.
func persistPath(dir, issuer, url string) string {
	source := "discovery"
	if url != "" {
		source = "url " + url
	}
	return filepath.Join(dir, atomicfile.Name("jwks-", issuer+"\n"+source, ".json"))
}

// loadPersisted installs the persisted key set, if there is one, it is for
// this issuer, and it is not older than MaxStale. Its save time counts as
// the last confirmation; a save time in the future (beyond a minute of
// clock skew) is refused, since the set would never go stale. Its ETag is
// not kept: the provider's 304 to it would vouch for whatever the file now
// holds, so the first refresh downloads the set whole. A missing file is
// not an error; anything but a regular file is.
func (m *Manager) loadPersisted() error {
	if m.persist == "" {
		return nil
	}
	// A regular file (a FIFO in its place must not block Run), of at most
	// twice MaxBytes: a key set of MaxBytes with its issuer, URL and ETag.
	b, err := regularfile.ReadFileMax(m.persist, 2*m.opts.MaxBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPersist, m.persist, err)
	}
	if p.Issuer != m.issuer {
		return fmt.Errorf("%w: %s is for issuer %q", ErrPersist, m.persist, p.Issuer)
	}
	age := m.now().Sub(p.SavedAt)
	if age < -persistSkew {
		return fmt.Errorf("%w: %s was saved %s in the future", ErrPersist, m.persist, (-age).Round(time.Second))
	}
	if m.opts.MaxStale > 0 && age > m.opts.MaxStale {
		return fmt.Errorf("%w: %w: saved %s ago (max stale %s)", ErrPersist, ErrStale, age.Round(time.Second), m.opts.MaxStale)
	}
	if age < 0 {
		p.SavedAt = m.now()
	}
	keys, err := m.parse(p.JWKS)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPersist, m.persist, err)
	}
	m.install(newKeySet(keys, []byte(p.JWKS), "", "persisted", p.SavedAt), p.SavedAt)
	m.log.Info("persisted jwks loaded", slog.Time("saved_at", p.SavedAt))
	return nil
}

// save writes the serving set after a successful refresh; failures are
// logged (the keys serve from memory regardless).
func (m *Manager) save(raw []byte, etag string, at time.Time) {
	if m.persist == "" {
		return
	}
	if err := m.write(raw, etag, at); err != nil {
		m.log.Warn("jwks not persisted", slog.String("error", err.Error()))
	}
}

func (m *Manager) write(raw []byte, etag string, at time.Time) error {
	if !json.Valid(raw) {
		return fmt.Errorf("%w: key set is not valid json", ErrPersist)
	}
	m.mu.Lock()
	u := m.st.URL
	m.mu.Unlock()
	b, err := json.Marshal(persisted{Issuer: m.issuer, URL: u, ETag: etag, SavedAt: at.UTC(), JWKS: raw})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	if err := atomicfile.Write(m.persist, b, atomicfile.PrivateFile, atomicfile.PrivateDir); err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	return nil
}
