package bundles

import "math"

// ParseCost is parseCost for the external tests: the estimated bytes that
// parsing the bundle file name holding data allocates.
func ParseCost(name string, data []byte) int64 { return parseCost(name, data, math.MaxInt64) }
