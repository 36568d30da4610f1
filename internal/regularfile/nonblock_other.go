//go:build !unix

package regularfile

// nonBlock is 0 where the system has no FIFOs to block on.
const nonBlock = 0
