package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/server/config"
)

// mustParse parses data as the file named file and fails t on any error.
func mustParse(t *testing.T, data, file string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(data), file)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// parseInvalid parses data as v.yaml and fails t unless the error wraps
// ErrInvalid and contains each of want. It returns the error.
func parseInvalid(t *testing.T, data string, want ...string) error {
	t.Helper()
	_, err := config.Parse([]byte(data), "v.yaml")
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	return err
}

// invalidCase is a configuration, read as v.yaml, that Parse refuses with
// an error containing each of want.
type invalidCase struct {
	name, data string
	want       []string
}

// parseInvalidCases runs parseInvalid on each case, as a subtest.
func parseInvalidCases(t *testing.T, tests []invalidCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parseInvalid(t, tc.data, tc.want...)
		})
	}
}
