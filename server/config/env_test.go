package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// parseWithEnv parses data with env as the whole environment.
func parseWithEnv(t *testing.T, data string, env map[string]string) (*Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	return Parse([]byte(data), "v.yaml")
}

func TestEnvExpansion(t *testing.T) {
	c, err := parseWithEnv(t, `addr: ${HOST}:${PORT}
policy:
  bundle_url: https://bundles.test/${TENANT}/authz.tar.gz
  poll_interval: ${POLL}
  require_tests: ${REQUIRE}
tokens:
  max_bytes: ${MAX}
  issuers:
    - issuer: "${ISSUER}"
      audiences: ['${AUD}', 'literal-$${NOT_EXPANDED}']
      algorithms: [RS256]
      hmac_secret_env: SECRET  # the name of a variable; comments are left alone: ${UNSET_IN_COMMENT}
`, map[string]string{"HOST": "0.0.0.0", "PORT": "8181", "TENANT": "acme", "POLL": "45s", "REQUIRE": "true",
		"MAX": "4096", "ISSUER": "https://idp.test", "AUD": "orders-api"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "0.0.0.0:8181" || c.Policy.BundleURL != "https://bundles.test/acme/authz.tar.gz" ||
		c.Policy.PollInterval != 45*time.Second || !c.Policy.RequireTests || c.Tokens.MaxBytes != 4096 {
		t.Errorf("expanded: %+v %+v", c.Addr, c.Policy)
	}
	is := c.Tokens.Issuers[0]
	if is.Issuer != "https://idp.test" || is.Audiences[0] != "orders-api" || is.Audiences[1] != "literal-${NOT_EXPANDED}" {
		t.Errorf("issuer %+v", is)
	}
}

// TestEnvExpansionCannotChangeStructure: a value is substituted into a
// parsed scalar, so YAML in it stays text.
func TestEnvExpansionCannotChangeStructure(t *testing.T) {
	c, err := parseWithEnv(t, "addr: ${EVIL}\n", map[string]string{"EVIL": "x\nexplain: true\npolicy: {dir: /}"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Explain || c.Policy.Dir != "" || !strings.HasPrefix(c.Addr, "x\nexplain") {
		t.Errorf("an environment value changed the configuration's structure: %+v", c)
	}
	c, err = parseWithEnv(t, "policy:\n  require_tests: ${QUOTED}\n", map[string]string{"QUOTED": "'true'"})
	if err == nil {
		t.Errorf("a quoted value from the environment was read as a boolean: %+v", c.Policy)
	}
}

func TestEnvExpansionErrors(t *testing.T) {
	tests := []struct {
		name, data string
		env        map[string]string
		want       []string
		notWant    string
	}{
		{"unset", "policy:\n  dir: p\ntokens:\n  issuers:\n    - issuer: ${IDP_URL}\n", nil,
			[]string{"v.yaml:5: tokens.issuers[0].issuer: environment variable IDP_URL is not set"}, ""},
		{"two unset", "addr: ${A_UNSET}:${B_UNSET}\n", nil,
			[]string{"v.yaml:1: addr: environment variable A_UNSET is not set", "v.yaml:1: addr: environment variable B_UNSET is not set"}, ""},
		{"bad name", "addr: ${1X}\n", nil, []string{`v.yaml:1: addr: "${1X}" is not a variable reference`}, ""},
		{"a secret of the wrong type is not repeated", "tokens:\n  max_bytes: ${SECRET_MAX}\n", map[string]string{"SECRET_MAX": "hunter2"},
			[]string{"v.yaml:2: tokens.max_bytes: want a size such as 1048576, 512KiB or 1MiB, got the value of ${SECRET_MAX}"}, "hunter2"},
		// The YAML library quotes a long value cut short ("hunter2-...");
		// it is found all the same, and never repeated.
		{"a long secret of the wrong type is not repeated", "limits:\n  eval_timeout: ${LONG_SECRET}\n",
			map[string]string{"LONG_SECRET": "hunter2-and-then-some-more"},
			[]string{"v.yaml:2: limits.eval_timeout: want", "the value of ${LONG_SECRET}"}, "hunter2"},
		{"a long secret in a flow mapping", "tokens: {issuers: [{issuer: 'https://i', max_lifetime: \"${LONG_SECRET}\"}]}\n",
			map[string]string{"LONG_SECRET": "hunter2-and-then-some-more"}, []string{"LONG_SECRET"}, "hunter2"},
		// Set but empty is a mistake as unset is: an empty key file name
		// would turn bundle verification off.
		{"empty", "policy:\n  bundle_file: b.tar.gz\n  verification_key_file: ${BUNDLE_KEY}\n", map[string]string{"BUNDLE_KEY": ""},
			[]string{"v.yaml:3: policy.verification_key_file: environment variable BUNDLE_KEY is empty"}, ""},
		// A value YAML reads as null stays a string: it cannot remove a
		// whole section.
		{"null", "tls: ${TLS_BLOCK}\n", map[string]string{"TLS_BLOCK": "~"}, []string{"v.yaml:1: tls: want"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWithEnv(t, tc.data, tc.env)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("error %q repeats %q", err, tc.notWant)
			}
		})
	}
}

// TestTypeErrorsNameTheKey: a value of the wrong type is reported at its
// line, with its key and what the key wants.
func TestTypeErrorsNameTheKey(t *testing.T) {
	tests := []struct{ data, want string }{
		{"tokens:\n  max_bytes: lots\n", `v.yaml:2: tokens.max_bytes: want a size such as 1048576, 512KiB or 1MiB, got "lots"`},
		{"limits:\n  max_json_depth: deep\n", `v.yaml:2: limits.max_json_depth: want an integer, got "deep"`},
		{"tokens:\n  leeway: forever\n", `v.yaml:2: tokens.leeway: want a duration such as 30s or 5m, got "forever"`},
		{"policy:\n  require_tests: maybe\n", `v.yaml:2: policy.require_tests: want true or false, got "maybe"`},
		{"tokens:\n  issuers:\n    - issuer: x\n      audiences: orders\n", `v.yaml:4: tokens.issuers[0].audiences: want a list, got "orders"`},
		{"tokens: {leeway: 5s, max_bytes: [1]}\n", `v.yaml:1: tokens.max_bytes: want a size such as 1048576, 512KiB or 1MiB, got a list`},
		{"limits:\n  eval_timeout: 1s\n  max_body_bytes: {a: 1}\n", `v.yaml:3: limits.max_body_bytes: want a size such as 1048576, 512KiB or 1MiB, got a mapping`},
		{"addr: [a, b]\n", `v.yaml:1: addr: want a string, got a list`},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.data), "v.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.data, err, tc.want)
		}
	}
}

func FuzzExpandEnv(f *testing.F) {
	for _, s := range []string{"addr: ${A}\n", "a: [${A}, '${B}', \"$${C}\"]\n", "a: ${}\n", "a: ${A${B}}\n", "k: |\n  ${A}\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var root yaml.Node
		if yaml.Unmarshal([]byte(data), &root) != nil {
			return
		}
		_, _ = expandEnv("f.yaml", &root, func(name string) (string, bool) { return "v", name != "UNSET" })
		_, _ = Parse([]byte(data), "f.yaml")
	})
}
