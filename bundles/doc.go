// Package bundles is where policies come from. A Source (a watched directory,
// an OPA bundle file, a remote bundle polled over HTTP) produces complete,
// immutable Snapshots — modules, data and a revision — and hands each one to a
// Sink, normally an *authz.Engine, which compiles it off the hot path and
// swaps it in only if it is good.
//
// ReadFS turns any fs.FS laid out like an OPA bundle (.rego files, data.json
// and data.yaml mapped to data paths by directory, an optional .manifest)
// into a Snapshot, using OPA's own bundle reader. ReadTarball does the same
// for an OPA bundle archive (.tar.gz), optionally verifying its signature.
//
// # Bounded before trusted
//
// Every read happens in four steps, and each step trusts the bundle a little
// more than the one before:
//
//  1. Unpack. Files are read one at a time, each into memory, and counted as
//     they stream against Limits, which every reader and source embeds in
//     its options: the read stops at the first file over MaxFileBytes, the
//     first byte over MaxUnpackedBytes (all files together) or the first file
//     over MaxFiles, with an error wrapping ErrTooLarge that names the limit.
//     An archive is decompressed exactly once, and never further than its
//     limits allow (its headers get a small allowance per file), so a small
//     archive that expands to gigabytes costs no more memory than the limits.
//     OPA's own tarball loader decompresses every file into memory before it
//     returns the first one, so this package does not use it.
//  2. Estimate. Structured data (data.json, data.yaml, and the manifest,
//     in every name OPA reads one by: any name ending in .manifest or
//     .manifest.pb) is bounded before it is parsed: a byte scan estimates
//     what parsing each file would allocate, and what OPA does with a
//     manifest's roots and file_rego_versions patterns (every pair of
//     roots, every pattern against every module) is charged too; the
//     read stops with ErrTooLarge when the files together would exceed
//     MaxUnpackedBytes (see parsecost.go).
//  3. Verify (tarballs with a key only). The signature is checked against the
//     unpacked files before any module is parsed (OPA hashes a data file's
//     parsed value, so it parses data files, within the estimate, to
//     check them); a missing, wrong or incomplete signature is an error
//     wrapping ErrSignature.
//  4. Parse. OPA's bundle reader parses the unpacked files (and, with a key,
//     verifies the signature again as it does so).
//
// The defaults (DefaultMaxBytes, DefaultMaxFileBytes, DefaultMaxUnpackedBytes,
// DefaultMaxFiles) fit policy bundles with room to spare, and data files of
// a few MiB of JSON or a few hundred KiB of YAML; data sets larger than that
// belong in a database, not in a bundle.
package bundles
