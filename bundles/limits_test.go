package bundles_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
)

// limitCase is one row of the limit tables: options derived from the
// bundle's real file count, total and largest file.
type limitCase struct {
	name    string
	limits  func(files int, total, largest int64) (maxFiles int, maxUnpacked, maxFile int64)
	wantErr error  // nil: accepted
	want    string // in the error message
}

func limitCases() []limitCase {
	return []limitCase{
		{name: "defaults", limits: func(int, int64, int64) (int, int64, int64) { return 0, 0, 0 }},
		{name: "files exactly at limit", limits: func(n int, _, _ int64) (int, int64, int64) { return n, 0, 0 }},
		{name: "files one over", limits: func(n int, _, _ int64) (int, int64, int64) { return n - 1, 0, 0 },
			wantErr: bundles.ErrTooLarge, want: "files"},
		{name: "total bytes exactly at limit", limits: func(_ int, total, _ int64) (int, int64, int64) { return 0, total, 0 }},
		{name: "total bytes one over", limits: func(_ int, total, _ int64) (int, int64, int64) { return 0, total - 1, 0 },
			wantErr: bundles.ErrTooLarge, want: "unpacks to more than"},
		{name: "file bytes exactly at limit", limits: func(_ int, _, largest int64) (int, int64, int64) { return 0, 0, largest }},
		{name: "file bytes one over", limits: func(_ int, _, largest int64) (int, int64, int64) { return 0, 0, largest - 1 },
			wantErr: bundles.ErrTooLarge, want: "is larger than"},
		{name: "negative files", limits: func(int, int64, int64) (int, int64, int64) { return -1, 0, 0 },
			wantErr: bundles.ErrConfig, want: "MaxFiles"},
		{name: "negative total", limits: func(int, int64, int64) (int, int64, int64) { return 0, -1, 0 },
			wantErr: bundles.ErrConfig, want: "MaxUnpackedBytes"},
	}
}

// padded returns a module with an 8 KiB comment added, so that the limits
// meet the bundle's bytes before they meet the estimated cost of parsing
// its data.json and .manifest (about 5 KiB each), which MaxUnpackedBytes
// also bounds.
func padded(src string) string { return src + "\n# " + strings.Repeat("padding ", 1024) + "\n" }

// checkLimitErr checks err against a row and, for limit errors, that the
// message names the configured limit.
func checkLimitErr(t *testing.T, tc limitCase, err error, limit string) {
	t.Helper()
	if tc.wantErr == nil {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.want) {
		t.Fatalf("err = %v, want %v containing %q", err, tc.wantErr, tc.want)
	}
	if errors.Is(tc.wantErr, bundles.ErrTooLarge) {
		if !errors.Is(err, bundles.ErrRead) || !strings.Contains(err.Error(), limit) {
			t.Fatalf("err = %v, want ErrRead naming the limit %s", err, limit)
		}
	}
}

func TestReadTarballLimits(t *testing.T) {
	raw := bundletest.Tarball(t, map[string]string{
		"authz/authz.rego": padded(bundletest.Policy("authz", 1)),
		"lib/lib.rego":     padded(bundletest.Policy("lib", 12345)),
	}, map[string]any{"roles": []any{"admin", "reader"}}, "rev-1", nil)
	files := tarFiles(t, raw) // data.json, two modules and .manifest
	var total, largest int64
	for _, b := range files {
		total += int64(len(b))
		largest = max(largest, int64(len(b)))
	}
	reads := map[string]func(opts bundles.TarballOptions) (*bundles.Snapshot, error){
		"ReadTarballBytes": func(o bundles.TarballOptions) (*bundles.Snapshot, error) { return bundles.ReadTarballBytes(raw, o) },
		"ReadTarball": func(o bundles.TarballOptions) (*bundles.Snapshot, error) {
			return bundles.ReadTarball(bytes.NewReader(raw), o)
		},
	}
	for _, tc := range limitCases() {
		for fn, read := range reads {
			t.Run(fn+"/"+tc.name, func(t *testing.T) {
				n, unpacked, file := tc.limits(len(files), total, largest)
				s, err := read(bundles.TarballOptions{Limits: bundles.Limits{MaxFiles: n, MaxUnpackedBytes: unpacked, MaxFileBytes: file}})
				checkLimitErr(t, tc, err, fmt.Sprint(max(int64(n), unpacked, file)))
				if err == nil && (s.Revision != "rev-1" || len(s.Modules) != 2) {
					t.Fatalf("snapshot %s with modules %v", s.Revision, bundletest.ModulePaths(s))
				}
			})
		}
	}
}

// TestReadTarballArchiveOverhead: entries that are not files (here,
// directories) hold no content, but decompressing them is still bounded.
func TestReadTarballArchiveOverhead(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for i := range 1000 {
		bundletest.Must(t, tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%04d/", i), Typeflag: tar.TypeDir, Mode: 0o755}))
	}
	bundletest.Must(t, tw.Close())
	bundletest.Must(t, zw.Close())

	if _, err := bundles.ReadTarballBytes(buf.Bytes(), bundles.TarballOptions{}); err != nil {
		t.Fatalf("default limits: %v", err)
	}
	_, err := bundles.ReadTarballBytes(buf.Bytes(), bundles.TarballOptions{Limits: bundles.Limits{MaxFiles: 2, MaxUnpackedBytes: 1000}})
	if !errors.Is(err, bundles.ErrTooLarge) || !strings.Contains(err.Error(), "with its headers") {
		t.Fatalf("err = %v, want ErrTooLarge for the archive's headers", err)
	}
}

func TestReadFSLimits(t *testing.T) {
	fsys := fstest.MapFS{
		"authz/authz.rego":  {Data: []byte(padded(bundletest.Policy("authz", 1)))},
		"lib/lib.rego":      {Data: []byte(padded(bundletest.Policy("lib", 12345)))},
		"data.json":         {Data: []byte(`{"roles": ["admin", "reader"]}`)},
		".hidden.rego":      {Data: bytes.Repeat([]byte("x"), 1000)}, // ignored: never counted
		"authz/authz.rego~": {Data: bytes.Repeat([]byte("x"), 1000)},
	}
	var (
		n              int
		total, largest int64
	)
	for name, f := range fsys {
		if bundles.IgnoredName(name[strings.LastIndex(name, "/")+1:], false) {
			continue
		}
		n++
		total += int64(len(f.Data))
		largest = max(largest, int64(len(f.Data)))
	}
	variants := map[string]fs.FS{
		// Listing and reading see the same sizes: the listing refuses.
		"sizes listed": fsys,
		// The listing reports every file empty (a file that grew after it
		// was listed): only the count taken while reading can refuse.
		"sizes hidden": shrinkFS{fsys},
	}
	for _, tc := range limitCases() {
		for vn, v := range variants {
			t.Run(vn+"/"+tc.name, func(t *testing.T) {
				files, unpacked, file := tc.limits(n, total, largest)
				s, err := bundles.ReadFS(v, bundles.ReadOptions{Limits: bundles.Limits{MaxFiles: files, MaxUnpackedBytes: unpacked, MaxFileBytes: file}})
				checkLimitErr(t, tc, err, fmt.Sprint(max(int64(files), unpacked, file)))
				if err == nil && len(s.Modules) != 2 {
					t.Fatalf("modules %v", bundletest.ModulePaths(s))
				}
			})
		}
	}
}

// TestReadFSRefusesFromListing: a tree over a limit is refused from its
// listing, before any file is read.
func TestReadFSRefusesFromListing(t *testing.T) {
	fsys := fstest.MapFS{}
	for i := range 50 {
		fsys[fmt.Sprintf("p%02d/x.rego", i)] = &fstest.MapFile{Data: []byte(bundletest.Policy(fmt.Sprintf("p%02d", i), i))}
	}
	for _, tc := range []struct {
		name string
		opts bundles.ReadOptions
	}{
		{name: "files", opts: bundles.ReadOptions{Limits: bundles.Limits{MaxFiles: 10}}},
		{name: "bytes", opts: bundles.ReadOptions{Limits: bundles.Limits{MaxUnpackedBytes: 100}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &readCounter{MapFS: fsys}
			_, err := bundles.ReadFS(c, tc.opts)
			if !errors.Is(err, bundles.ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			if c.reads != 0 {
				t.Fatalf("%d reads of file content, want 0", c.reads)
			}
		})
	}
}

// readCounter counts the reads of file content from a MapFS.
type readCounter struct {
	fstest.MapFS
	reads int
}

func (c *readCounter) Open(name string) (fs.File, error) {
	f, err := c.MapFS.Open(name)
	if err != nil {
		return nil, err
	}
	return countedFile{File: f, reads: &c.reads}, nil
}

type countedFile struct {
	fs.File
	reads *int
}

func (f countedFile) Read(p []byte) (int, error) {
	*f.reads++
	return f.File.Read(p)
}

// shrinkFS lists every file with size 0, whatever it holds.
type shrinkFS struct{ fstest.MapFS }

func (s shrinkFS) ReadDir(name string) ([]fs.DirEntry, error) {
	es, err := s.MapFS.ReadDir(name)
	for i, e := range es {
		es[i] = shrunkEntry{e}
	}
	return es, err
}

type shrunkEntry struct{ fs.DirEntry }

func (e shrunkEntry) Info() (fs.FileInfo, error) {
	info, err := e.DirEntry.Info()
	if err != nil || info.IsDir() {
		return info, err
	}
	return shrunkInfo{info}, nil
}

type shrunkInfo struct{ fs.FileInfo }

func (shrunkInfo) Size() int64 { return 0 }

// zeroBomb returns a gzipped tar of files files of mib MiB of zeros each.
// Deflating gigabytes of zeros takes minutes under -race, so the archive is
// assembled from gzip members (RFC 1952 allows several; gzip, OPA and Go
// read them as one stream): one per tar header, and the same compressed
// MiB of zeros repeated.
func zeroBomb(t *testing.T, files, mib int) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	member := func(b []byte) {
		zw.Reset(&out)
		_, err := zw.Write(b)
		bundletest.Must(t, err)
		bundletest.Must(t, zw.Close())
	}
	var zeros bytes.Buffer
	zw.Reset(&zeros)
	_, err := zw.Write(make([]byte, 1<<20))
	bundletest.Must(t, err)
	bundletest.Must(t, zw.Close())
	for i := range files {
		var hdr bytes.Buffer
		bundletest.Must(t, tar.NewWriter(&hdr).WriteHeader(&tar.Header{
			Name: fmt.Sprintf("/zeros/%03d.bin", i), Mode: 0o644, Size: int64(mib) << 20, Typeflag: tar.TypeReg,
		}))
		member(hdr.Bytes()) // 512 bytes; the content needs no padding
		for range mib {
			out.Write(zeros.Bytes())
		}
	}
	member(make([]byte, 1024)) // end of archive
	return out.Bytes()
}

// TestZeroBombBuilder checks that zeroBomb makes a readable archive.
func TestZeroBombBuilder(t *testing.T) {
	s, err := bundles.ReadTarballBytes(zeroBomb(t, 3, 1), bundles.TarballOptions{})
	if err != nil || len(s.Modules) != 0 {
		t.Fatalf("ReadTarballBytes = %v, %v; want an empty snapshot", s, err)
	}
}

// TestReadTarballZeroBombBounded: a small archive of many zero-filled files,
// each under the per-file limit, is refused having allocated little more
// than the limit, with and without signature verification. Were files
// buffered before they were counted (as OPA's tarball loader does), this
// would allocate the archive's full 1.6 GiB.
func TestReadTarballZeroBombBounded(t *testing.T) {
	const (
		limit     = 16 << 20
		allowance = 4 << 20 // decompressor and tar reader state, errors
	)
	bomb := zeroBomb(t, 200, 8)
	key := bundletest.NewKey(t)
	for _, tc := range []struct {
		name   string
		verify bundles.VerifyOptions
	}{
		{name: "no verification"},
		{name: "verification, unsigned", verify: bundles.VerifyOptions{Key: key.Public}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := bundles.TarballOptions{Limits: bundles.Limits{MaxUnpackedBytes: limit}, Verify: tc.verify}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := bundles.ReadTarballBytes(bomb, opts)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, bundles.ErrTooLarge) || !errors.Is(err, bundles.ErrRead) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d-byte archive of 200 × 8 MiB refused at a %d MiB limit: TotalAlloc %.1f MiB (%v)",
				len(bomb), limit>>20, float64(alloc)/(1<<20), err)
			if bound := uint64(4*limit + allowance); alloc > bound {
				t.Fatalf("allocated %d bytes refusing the archive, want at most %d", alloc, bound)
			}
		})
	}
}

// oneShotReader counts the bytes read from it.
type oneShotReader struct {
	r io.Reader
	n int64
}

func (o *oneShotReader) Read(p []byte) (int, error) {
	k, err := o.r.Read(p)
	o.n += int64(k)
	return k, err
}

// TestReadTarballSignatureOnePass: a refused signature is classified as
// ErrSignature from a single pass over the archive. ReadTarball keeps no
// copy of the compressed archive, so the input having been read exactly
// once, end to end, means the archive was unpacked once.
func TestReadTarballSignatureOnePass(t *testing.T) {
	key, other := bundletest.NewKey(t), bundletest.NewKey(t)
	mods := map[string]string{"authz/authz.rego": bundletest.Policy("authz", 1)}
	signed := bundletest.Tarball(t, mods, nil, "rev-1", &key)
	for _, tc := range []struct {
		name string
		raw  []byte
		key  []byte
	}{
		{name: "unsigned", raw: bundletest.Tarball(t, mods, nil, "rev-1", nil), key: key.Public},
		{name: "wrong key", raw: signed, key: other.Public},
		{name: "tampered", raw: spliceSignature(t, signed, bundletest.Tarball(t,
			map[string]string{"authz/authz.rego": bundletest.Policy("authz", 2)}, nil, "rev-1", nil)), key: key.Public},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &oneShotReader{r: bytes.NewReader(tc.raw)}
			_, err := bundles.ReadTarball(r, bundles.TarballOptions{Verify: bundles.VerifyOptions{Key: tc.key}})
			if !errors.Is(err, bundles.ErrSignature) || !errors.Is(err, bundles.ErrRead) {
				t.Fatalf("err = %v, want ErrSignature and ErrRead", err)
			}
			if r.n != int64(len(tc.raw)) {
				t.Fatalf("read %d bytes of a %d-byte archive, want each byte once", r.n, len(tc.raw))
			}
		})
	}
}
