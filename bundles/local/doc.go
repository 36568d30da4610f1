// Package local provides the two file-system policy sources: Dir, a watched
// policy directory, and File, a watched OPA bundle (.tar.gz).
//
// Both watch with fsnotify and survive what editors and platforms really do
// to files: writes in place, write-to-temp-and-rename (vim, JetBrains, VS
// Code), delete and recreate, new and removed subdirectories (Dir watches
// recursively), and the Kubernetes ConfigMap volume, where the kubelet
// atomically swaps a hidden "..data" symlink. Events are debounced (40 ms by
// default), then the whole set is read again; content identical to what was
// last offered is not offered twice, so one save yields one snapshot.
//
// Dir follows symbolic links when it watches, as the read does: before
// every read it walks the tree to add and drop watches, and that walk
// watches each directory once however many links lead to it, follows no
// link to a directory above one it watches (a link to /), and stops at
// Limits.MaxFiles directories, failing that load with an error wrapping
// bundles.ErrTooLarge ("policy directory has more than N directories").
//
// Constructors validate options and start nothing. Run delivers the first
// snapshot synchronously, before it waits for events, closes Initialized
// when that first attempt is done, and returns only after every goroutine
// it started has exited. A read or load failure keeps the previous snapshot
// serving (the sink's contract) and shows, with file:line:col, in Status and
// the log; the next good save recovers.
//
// A failed read is retried every RetryInterval until a save fixes it, but
// logged and counted once: a retry that fails the same way only moves
// Status.LastAttempt. When the content becomes good again — new, or back
// to what the sink serves — the source logs one "policy recovered" line and
// clears Status.LastError; if the sink had refused the broken save, it is
// given the good snapshot again, so that its own status clears too.
package local
