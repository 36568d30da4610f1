package main

import (
	"testing"
	"testing/fstest"
)

// TestContainerMemoryLimit: the soft limit is 90% of the process's own
// cgroup's memory limit, cgroup v2 or v1, and there is none when the
// cgroup sets none or the files say nothing usable.
func TestContainerMemoryLimit(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, tc := range []struct {
		name     string
		fs       fstest.MapFS
		want     int64
		wantFile string
	}{
		{"v2 container (own namespace)", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("536870912\n"),
		}, 483183820, "sys/fs/cgroup/memory.max"},
		{"v2 service: its own cgroup's limit, not the root's", fstest.MapFS{
			"proc/self/cgroup": file("0::/system.slice/verdict.service\n"),
			"sys/fs/cgroup/system.slice/verdict.service/memory.max": file("1073741824\n"),
			"sys/fs/cgroup/memory.max":                              file("max\n"),
		}, 966367641, "sys/fs/cgroup/system.slice/verdict.service/memory.max"},
		{"v2 unlimited", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, 0, "sys/fs/cgroup/memory.max"},
		{"v1 container", fstest.MapFS{
			"proc/self/cgroup":                           file("12:cpu,cpuacct:/\n4:memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("268435456\n"),
		}, 241591910, "sys/fs/cgroup/memory/memory.limit_in_bytes"},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           file("4:memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0, "sys/fs/cgroup/memory/memory.limit_in_bytes"},
		{"garbage", fstest.MapFS{
			"sys/fs/cgroup/memory.max": file("lots\n"),
		}, 0, "sys/fs/cgroup/memory.max"},
		{"a path that climbs out is not followed", fstest.MapFS{
			"proc/self/cgroup": file("0::/../../etc\n"),
			"etc/memory.max":   file("1048576\n"),
			"sys/fs/cgroup/x":  file(""),
		}, 0, ""},
		{"no cgroup files", fstest.MapFS{}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, gotFile, ok := containerMemoryLimit(tc.fs)
			if got != tc.want || ok != (tc.want > 0) || gotFile != tc.wantFile {
				t.Errorf("= %d, %q, %v; want %d, %q", got, gotFile, ok, tc.want, tc.wantFile)
			}
		})
	}
}
