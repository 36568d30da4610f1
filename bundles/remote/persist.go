package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/atomicfile"
	"github.com/verdict-pdp/verdict/internal/httpfetch"
	"github.com/verdict-pdp/verdict/internal/regularfile"
)

// meta is the persisted bundle's companion file. Nothing reads URL back:
// it tells a person which bundle_url the file is of, redacted
// (httpfetch.Redact) as in logs, so that no password or presigned query
// token is written to disk.
type meta struct {
	URL      string    `json:"url"`
	ETag     string    `json:"etag,omitempty"`
	Revision string    `json:"revision,omitempty"`
	SavedAt  time.Time `json:"saved_at"`
	// ConfirmedAt is when a poll last found the server serving this
	// bundle, kept with MaxAge only (at most MaxAge/4 late).
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
}

// confirmed is when the bundle was last known to be the server's.
func (m meta) confirmed() time.Time {
	if m.ConfirmedAt.After(m.SavedAt) {
		return m.ConfirmedAt
	}
	return m.SavedAt
}

func (p *Poller) persistPaths() (bundlePath, metaPath string) {
	name := atomicfile.Name("bundle-", p.opts.URL, "")
	return filepath.Join(p.opts.PersistDir, name+".tar.gz"), filepath.Join(p.opts.PersistDir, name+".json")
}

// savedKey identifies a persisted bundle by its ETag and content, so that
// the same bundle is not written again.
func savedKey(raw []byte, etag string) string {
	sum := sha256.Sum256(raw)
	return etag + "|" + hex.EncodeToString(sum[:])
}

// loadPersisted offers the persisted bundle to sink, verifying it as if it
// had just been fetched. Failures are recorded and logged; polling goes on.
// The bundle and its companion are read as regular files of at most
// MaxBytes: a FIFO in their place is refused, never waited on, and a huge
// (or sparse) file is not read past the limit.
func (p *Poller) loadPersisted(ctx context.Context, sink bundles.Sink) {
	if p.opts.PersistDir == "" {
		return
	}
	bp, mp := p.persistPaths()
	raw, err := regularfile.ReadFileMax(bp, p.opts.MaxBytes)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	start := p.now()
	var m meta
	if err == nil {
		var mb []byte
		if mb, err = regularfile.ReadFileMax(mp, p.opts.MaxBytes); err == nil {
			err = json.Unmarshal(mb, &m)
		}
	}
	if err != nil {
		p.rec.Failed(start, slog.LevelWarn, "persisted policy bundle unreadable", fmt.Errorf("%w: %w", ErrPersist, err))
		return
	}
	opts, err := p.tarballOptions()
	var snap *bundles.Snapshot
	if err == nil {
		snap, err = bundles.ReadTarballBytes(raw, opts)
	}
	if err != nil {
		p.rec.Failed(start, slog.LevelError, "persisted policy bundle refused", fmt.Errorf("%w: %s: %w", ErrPersist, bp, err))
		return
	}
	if err := p.rec.Deliver(ctx, sink, snap, start); err != nil {
		return // recorded and logged by the Recorder
	}
	// The persisted ETag is not sent: the server's 304 to it would vouch
	// for whatever the file now holds (an unsigned bundle replaced on disk
	// would keep serving for as long as the server's bundle is unchanged).
	// The first poll downloads the bundle whole.
	if red := httpfetch.Redact(p.opts.URL); m.URL != red {
		// Written by an earlier release, with the URL in full: the bundle
		// is not written again while unchanged, so scrub its companion now.
		m.URL = red
		mb, err := json.Marshal(m)
		if err == nil {
			err = atomicfile.Write(mp, mb, atomicfile.PrivateFile, atomicfile.PrivateDir)
		}
		if err != nil {
			p.log.Warn("policy bundle not persisted", "origin", p.origin, "error", err)
		}
	}
	p.saved, p.savedMeta = savedKey(raw, m.ETag), m
	// Confirmed then, as far as MaxAge is concerned: a restart while the
	// server is down serves for what is left of it. A time to come is a
	// file not written by a Poller, and confirms nothing.
	if confirmed := m.confirmed(); p.opts.MaxAge > 0 && !confirmed.After(p.now()) {
		p.mu.Lock()
		p.lastPoll = confirmed
		p.mu.Unlock()
	}
	p.log.Info("persisted policy bundle loaded", "origin", p.origin, "revision", snap.Revision, "saved_at", m.SavedAt,
		"confirmed_at", m.ConfirmedAt)
}

// persistConfirmed records, with MaxAge, that a poll has just confirmed
// the persisted bundle, when the time recorded is MaxAge/4 old or more:
// a few small writes per MaxAge, for a confirmation at most that late.
func (p *Poller) persistConfirmed() {
	if p.opts.PersistDir == "" || p.opts.MaxAge <= 0 || p.saved == "" {
		return
	}
	now := p.now().UTC()
	if now.Sub(p.savedMeta.confirmed()) < p.opts.MaxAge/4 {
		return
	}
	m := p.savedMeta
	m.ConfirmedAt = now
	mb, err := json.Marshal(m)
	if err == nil {
		_, mp := p.persistPaths()
		err = atomicfile.Write(mp, mb, atomicfile.PrivateFile, atomicfile.PrivateDir)
	}
	if err != nil {
		if err.Error() != p.confirmErr { // once per distinct failure, not every poll
			p.log.Warn("policy bundle confirmation not persisted", "origin", p.origin, "error", err)
		}
		p.confirmErr = err.Error()
		return
	}
	p.savedMeta, p.confirmErr = m, ""
}

// persist atomically replaces the persisted bundle with raw, unless it
// already holds it with that ETag.
func (p *Poller) persist(raw []byte, etag, revision string) error {
	if p.opts.PersistDir == "" {
		return nil
	}
	key := savedKey(raw, etag)
	if key == p.saved {
		return nil
	}
	// Until this bundle is saved whole, nothing persisted is the server's:
	// no confirmation may be written onto the bundle it replaces.
	p.saved, p.savedMeta = "", meta{}
	bp, mp := p.persistPaths()
	m := meta{URL: httpfetch.Redact(p.opts.URL), ETag: etag, Revision: revision, SavedAt: p.now().UTC()}
	mb, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	// Clear the ETag, replace the bundle, then record its ETag: a crash in
	// between costs one download, never a 304 for the wrong bundle.
	if _, err := os.Stat(mp); err == nil {
		cleared, _ := json.Marshal(meta{URL: m.URL})
		if err := atomicfile.Write(mp, cleared, atomicfile.PrivateFile, atomicfile.PrivateDir); err != nil {
			return fmt.Errorf("%w: %w", ErrPersist, err)
		}
	}
	if err := atomicfile.Write(bp, raw, atomicfile.PrivateFile, atomicfile.PrivateDir); err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	if err := atomicfile.Write(mp, mb, atomicfile.PrivateFile, atomicfile.PrivateDir); err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	p.saved, p.savedMeta = key, m
	return nil
}
