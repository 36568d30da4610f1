package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/server/config"
)

// policyFlags choose the policy set for decide, test and check.
type policyFlags struct {
	dir        string // a directory, or an OPA bundle file (.tar.gz)
	bundle     string
	entrypoint string
}

// isBundleFile reports whether path names an OPA bundle tarball rather than
// a policy directory.
func isBundleFile(path string) bool {
	if strings.HasSuffix(path, ".tar.gz") || strings.HasSuffix(path, ".tgz") {
		return true
	}
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}

// snapshot reads the policy set: --bundle or --policies, else the
// configuration's policy.bundle_file or policy.dir, else the embedded
// default policies. A bundle is verified when the configuration names a
// verification key.
func (p *policyFlags) snapshot(cfg *config.Config) (*bundles.Snapshot, error) {
	dir, bundleFile := p.dir, p.bundle
	if dir != "" && bundleFile == "" && isBundleFile(dir) {
		dir, bundleFile = "", dir
	}
	var verify bundles.VerifyOptions
	if cfg != nil {
		if dir == "" && bundleFile == "" {
			switch {
			case cfg.Policy.Dir != "":
				dir = cfg.Path(cfg.Policy.Dir)
			case cfg.Policy.BundleFile != "":
				bundleFile = cfg.Path(cfg.Policy.BundleFile)
			case cfg.Policy.BundleURL != "":
				return nil, fmt.Errorf("policy.bundle_url: fetch the bundle and pass it with --bundle")
			}
		}
		var err error
		if verify, err = bundleVerification(cfg); err != nil {
			return nil, err
		}
	}
	switch {
	case bundleFile != "":
		f, err := os.Open(bundleFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return bundles.ReadTarball(f, bundles.TarballOptions{Origin: "bundle:" + bundleFile, Verify: verify})
	case dir != "":
		return bundles.ReadDir(dir, bundles.ReadOptions{})
	}
	return bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
}

// entry returns the entrypoint: the flag, else the configuration's.
func (p *policyFlags) entry(cfg *config.Config) string {
	if p.entrypoint == "" && cfg != nil {
		return cfg.Policy.Entrypoint
	}
	return p.entrypoint
}

// bundleVerification reads the configuration's bundle signing key; no key
// configured means bundles are not verified.
func bundleVerification(cfg *config.Config) (bundles.VerifyOptions, error) {
	if cfg.Policy.VerificationKeyFile == "" {
		return bundles.VerifyOptions{}, nil
	}
	key, err := os.ReadFile(cfg.Path(cfg.Policy.VerificationKeyFile))
	if err != nil {
		return bundles.VerifyOptions{}, fmt.Errorf("policy.verification_key_file: %w", err)
	}
	return bundles.VerifyOptions{Key: key, Algorithm: cfg.Policy.VerificationAlgorithm}, nil
}
