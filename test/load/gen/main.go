// Command gen prepares the HTTP load comparison of Verdict against OPA's own
// server (`opa run --server`), for test/load/run.sh, and checks that both
// servers answer each workload as designed.
//
//	gen -out DIR -alg RS256 [-n 1000] [-new 150000] [-workloads "cached cert rest new5k newall abac"]
//	gen check -url http://127.0.0.1:PORT -server verdict|opa -dir DIR/<alg>/<workload> [-from-end]
//
// Generation makes a signing key (and, for the cert workload, a CA and
// service certificates) at run time, mints the token pools, and writes
// everything both servers and wrk need into -out, which run.sh makes a
// temporary directory and deletes on exit. Private keys live only in this
// process's memory; only public keys and certificates are written.
//
//	<out>/load.lua                 wrk script: expands request templates with a token pool
//	<out>/<alg>/tokens.txt         -n tokens, roles ["viewer"], one a line
//	<out>/<alg>/tokens-abac.txt    -n tokens with a tenant claim, roles ["editor"]:
//	                               token, sub, tenant and another tenant, tab-separated
//	<out>/<alg>/tokens-new5k.txt   -new tokens cycling 5,000 subjects (none of them tokens.txt's)
//	<out>/<alg>/tokens-newall.txt  -new tokens, every one a distinct subject
//	<out>/<alg>/<workload>/
//	    workload.conf              what run.sh needs: pools, fresh, api, designed allow share
//	    verdict.tmpl, opa.tmpl     one request template a line (see below), the same
//	                               questions to each server
//	    expect.txt                 per template: allow|deny, a reason both servers give, what it is
//	    verdict/verdict.yaml       Verdict's configuration (+ pub.pem, policy/, ca.pem)
//	    opa/config.yaml            OPA's configuration (io_jwt cache on)
//	    opa/bundle/                OPA's policy (test/load/opabaseline) and data.json
//
// A request template is one line of tab-separated fields: method, path,
// headers ("Name: value"), and last the body (empty for none). In any field
// @1@ … @9@ are the fields of the token line the request uses (@1@ is the
// token) and @N@ is the request's number: wrk's first request number (an
// argument; run.sh never repeats a number within one server process) plus
// r×T+k for thread k of T's r-th request, so no two requests share it. wrk's
// thread k of T sends the pool's lines k, k+T, k+2T, … round-robin, its r-th
// request with template r mod (number of templates), so every thread asks
// the designed mix of questions.
//
// check sends each template with two token lines of the workload's pool (the
// last ones with -from-end, which a measured run of a new-token pool never
// reaches) and fails unless every answer is the designed allow or deny with
// the designed reason.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

const (
	issuer   = "https://issuer.load.test"
	audience = "verdict-load"
	// trustDomain names the services of the cert workload.
	trustDomain = "spiffe://load.test/ns/shop/sa/"
)

// allWorkloads are the workloads, in the order run.sh runs them.
var allWorkloads = []string{"cached", "cert", "rest", "new5k", "newall", "abac"}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		if err := check(os.Args[2:]); err != nil {
			fail(err)
		}
		return
	}
	out := flag.String("out", "", "output directory (required)")
	alg := flag.String("alg", "RS256", "signing algorithm: RS256 or ES256")
	n := flag.Int("n", 1000, "size of the cycled token pools")
	nNew := flag.Int("new", 0, "size of each every-token-new pool (new5k, newall)")
	wl := flag.String("workloads", strings.Join(allWorkloads, " "), "workloads to prepare")
	ttl := flag.Duration("ttl", 3*time.Hour, "token lifetime")
	flag.Parse()
	if *out == "" {
		fail(errors.New("-out is required"))
	}
	names := strings.Fields(*wl)
	for _, name := range names {
		if !slices.Contains(allWorkloads, name) {
			fail(fmt.Errorf("unknown workload %q (want some of: %s)", name, strings.Join(allWorkloads, " ")))
		}
	}
	if *n < 16 {
		fail(errors.New("-n must be at least 16"))
	}
	if err := generate(*out, *alg, *n, *nNew, names, *ttl); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}
