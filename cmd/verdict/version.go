package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/server"
)

// version is the release, stamped at build time (go build -ldflags
// "-X main.version=v1.2.3", as make image does). Unstamped, it is the
// module version a go install recorded, else "dev".
var version = ""

// buildInfo describes this binary: its version, the commit it was built
// from (with "-dirty" when the tree had changes) and its Go version.
func buildInfo() server.BuildInfo {
	bi := server.BuildInfo{Version: version, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if ok {
		if bi.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			bi.Version = info.Main.Version
		}
		dirty := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				bi.Revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && bi.Revision != "" {
			bi.Revision += "-dirty"
		}
	}
	if bi.Version == "" {
		bi.Version = "dev"
	}
	return bi
}

// versionLine is what verdict version and verdict --version print.
func versionLine(bi server.BuildInfo) string {
	s := "verdict " + bi.Version
	if bi.Revision != "" {
		s += " (commit " + bi.Revision + ")"
	}
	return s + " " + bi.GoVersion
}

func newVersionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := buildInfo()
			if asJSON {
				return printJSON(cmd.OutOrStdout(), bi)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionLine(bi))
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print version, revision and Go version as JSON")
	return cmd
}
