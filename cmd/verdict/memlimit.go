package main

import (
	"bufio"
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// setMemoryLimit gives the Go runtime a soft memory limit under the
// container's (containerMemoryLimit), unless GOMEMLIMIT is set (to a
// size, or to "off"): the operator's word wins. It returns what to log
// ("memory limit") once the server listens (the first log line names the
// bound address), or nil when it set none.
func setMemoryLimit() []slog.Attr {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return nil
	}
	if limit, file, ok := containerMemoryLimit(os.DirFS("/")); ok {
		debug.SetMemoryLimit(limit)
		return []slog.Attr{slog.Int64("bytes", limit), slog.String("from", "/"+file)}
	}
	return nil
}

// memoryLimitShare is the share of the container's memory limit given to
// the Go runtime as its soft limit, as the Kubernetes manifests set
// GOMEMLIMIT: the rest is for what the runtime does not manage (the
// binary's pages, the page cache the container is charged for).
const memoryLimitShare = 0.9

// containerMemoryLimit returns the soft memory limit for the Go runtime in
// a container whose memory is limited: memoryLimitShare of the cgroup's
// limit (cgroup v2 memory.max, or v1 memory.limit_in_bytes), read from
// fsys, the root file system. It returns ok false when there is no limit
// (none set, "max", v1's near-2^63 "unlimited"), or it cannot be read.
//
// Without a soft limit the collector lets the heap grow to twice what is
// live before it runs (GOGC=100): a process with 300 MiB live under a
// flood reaches 600 MiB and more, and a container limit of 512 MiB ends
// it, where collecting harder near the limit would have kept it.
func containerMemoryLimit(fsys fs.FS) (limit int64, file string, ok bool) {
	for _, file := range cgroupMemoryFiles(fsys) {
		raw, err := fs.ReadFile(fsys, file)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(raw))
		if v == "max" {
			return 0, file, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, file, false
		}
		return int64(float64(n) * memoryLimitShare), file, true
	}
	return 0, "", false
}

// cgroupMemoryFiles lists where the process's memory limit may be, most
// specific first: its own cgroup's (from /proc/self/cgroup; a container
// with its own cgroup namespace sees "/"), then the hierarchy's root,
// for cgroup v2 and v1.
func cgroupMemoryFiles(fsys fs.FS) []string {
	var v2, v1 string
	if raw, err := fs.ReadFile(fsys, "proc/self/cgroup"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			// hierarchy-ID:controllers:path; v2's is 0::path.
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") || strings.Contains(parts[2], "..") {
				continue
			}
			switch {
			case parts[0] == "0" && parts[1] == "":
				v2 = parts[2]
			case containsController(parts[1], "memory"):
				v1 = parts[2]
			}
		}
	}
	var files []string
	if v2 != "" && v2 != "/" {
		files = append(files, path.Join("sys/fs/cgroup", v2, "memory.max"))
	}
	files = append(files, "sys/fs/cgroup/memory.max")
	if v1 != "" && v1 != "/" {
		files = append(files, path.Join("sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"))
	}
	return append(files, "sys/fs/cgroup/memory/memory.limit_in_bytes")
}

func containsController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}
