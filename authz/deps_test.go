package authz_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEmbedderDependencies keeps package authz light for Go programs that
// embed it: no HTTP server, metrics library, file watcher or CLI framework,
// and of OpenTelemetry only the API (go.opentelemetry.io/otel/trace and the
// attribute and codes packages it needs): never the SDK, an exporter or
// the OTLP protocol, which are the embedder's choice.
func TestEmbedderDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, forbidden := range []string{
		"github.com/verdict-pdp/verdict/server",
		"github.com/prometheus/client_golang",
		"github.com/fsnotify/fsnotify",
		"github.com/spf13/cobra",
		"go.opentelemetry.io/otel/sdk",
		"go.opentelemetry.io/otel/exporters",
		"go.opentelemetry.io/proto",
		"go.opentelemetry.io/contrib",
	} {
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, forbidden) {
				t.Errorf("authz depends on %s", dep)
			}
		}
	}
}
