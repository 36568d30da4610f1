package main

import (
	"fmt"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/server/config"
)

// policyFlags choose the policy set for decide, test and check.
type policyFlags struct {
	dir        string
	entrypoint string
}

// snapshot reads the policy set: --policies, else the configuration's
// policy.dir, else the embedded default policies.
func (p *policyFlags) snapshot(cfg *config.Config) (*bundles.Snapshot, error) {
	dir := p.dir
	if dir == "" && cfg != nil {
		switch {
		case cfg.Policy.Dir != "":
			dir = cfg.Path(cfg.Policy.Dir)
		case cfg.Policy.BundleFile != "", cfg.Policy.BundleURL != "":
			return nil, fmt.Errorf("policy bundles are not supported by this command yet: use --policies DIR")
		}
	}
	if dir == "" {
		return bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
	}
	return bundles.ReadDir(dir, bundles.ReadOptions{})
}

// entry returns the entrypoint: the flag, else the configuration's.
func (p *policyFlags) entry(cfg *config.Config) string {
	if p.entrypoint == "" && cfg != nil {
		return cfg.Policy.Entrypoint
	}
	return p.entrypoint
}
