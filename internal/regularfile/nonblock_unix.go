//go:build unix

package regularfile

import "syscall"

const nonBlock = syscall.O_NONBLOCK
