//go:build race

package authz_test

// raceEnabled says the race detector is on. It makes allocation counts
// vary (sync.Pool drops a share of what is put back), so tests that count
// allocations exactly run without it.
const raceEnabled = true
