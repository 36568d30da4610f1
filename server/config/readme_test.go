package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/server/config"
)

// TestReadmeConfigurationParses: the configuration reference in the README
// (the YAML block with every section, limits: included) is a configuration
// the loader accepts, so that no documented key or value is one it refuses.
func TestReadmeConfigurationParses(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for _, part := range strings.Split(string(readme), "```yaml\n")[1:] {
		if b, _, _ := strings.Cut(part, "```"); strings.Contains(b, "\nlimits:") && strings.Contains(b, "\ntokens:") {
			block = b
		}
	}
	if block == "" {
		t.Fatal("README has no configuration reference (a yaml block with tokens: and limits:)")
	}
	c, err := config.Parse([]byte(block), "README.md")
	if err != nil {
		t.Fatalf("the README's configuration reference does not load: %v", err)
	}
	if c.Limits.TokenCacheBytes != 64<<20 || c.Limits.DecisionCacheBytes != 16<<20 || c.Limits.EvalTimeout == 0 {
		t.Errorf("limits as documented: %+v", c.Limits)
	}
}
