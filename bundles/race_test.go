//go:build race

package bundles

// raceEnabled says the race detector is on. It makes some allocations
// larger or more frequent (sync.Pool drops a share of what is put back),
// so allocation measurements allow for it.
const raceEnabled = true
