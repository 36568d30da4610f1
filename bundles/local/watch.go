package local

import (
	"errors"
	"time"
)

// Sentinel errors of package local.
var (
	// ErrOptions is wrapped by constructor errors about invalid options.
	ErrOptions = errors.New("local: invalid options")
	// ErrWatch is wrapped when Run cannot set up file watching at all.
	ErrWatch = errors.New("local: cannot watch")
)

const (
	defaultDebounce = 40 * time.Millisecond
	defaultRetry    = time.Second
)
