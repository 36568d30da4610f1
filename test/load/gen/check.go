package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// checkFirstN numbers check's requests (@N@) apart from wrk's.
const checkFirstN = 900_000_000

func check(args []string) error {
	fl := flag.NewFlagSet("check", flag.ContinueOnError)
	base := fl.String("url", "", "the server's base URL, http://127.0.0.1:PORT (required)")
	server := fl.String("server", "", "verdict or opa (required)")
	dir := fl.String("dir", "", "the workload's directory (required)")
	fromEnd := fl.Bool("from-end", false, "use the pool's last token lines (new-token pools)")
	per := fl.Int("per", 2, "token lines per template")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *base == "" || *dir == "" || (*server != "verdict" && *server != "opa") {
		return errors.New("check: -url, -dir and -server verdict|opa are required")
	}
	conf, err := readConf(filepath.Join(*dir, "workload.conf"))
	if err != nil {
		return err
	}
	tmpls, err := readLines(filepath.Join(*dir, *server+".tmpl"))
	if err != nil {
		return err
	}
	expects, err := readLines(filepath.Join(*dir, "expect.txt"))
	if err != nil {
		return err
	}
	if len(tmpls) == 0 || len(tmpls) != len(expects) {
		return fmt.Errorf("check: %d templates, %d expectations", len(tmpls), len(expects))
	}
	pool, err := readLines(filepath.Join(*dir, "..", conf["pool"]))
	if err != nil {
		return err
	}
	need := len(tmpls) * *per
	if len(pool) < need {
		return fmt.Errorf("check: the pool has %d lines, %d needed", len(pool), need)
	}
	lines := pool[:need]
	if *fromEnd {
		lines = pool[len(pool)-need:]
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var problems []string
	allows := 0
	for i := range need {
		j := i % len(tmpls)
		exp := strings.SplitN(expects[j], "\t", 3)
		if len(exp) < 2 {
			return fmt.Errorf("check: bad expectation %q", expects[j])
		}
		req, err := expand(tmpls[j], strings.Split(lines[i], "\t"), checkFirstN+i)
		if err != nil {
			return err
		}
		allow, reasons, err := ask(client, *base, *server, req)
		if err != nil {
			problems = append(problems, fmt.Sprintf("template %d (%s): %v", j+1, exp[2], err))
			continue
		}
		if allow {
			allows++
		}
		if allow != (exp[0] == "allow") || !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, exp[1]) }) {
			problems = append(problems, fmt.Sprintf("template %d (%s): allow %v, reasons %q; designed: %s, %q",
				j+1, exp[2], allow, reasons, exp[0], exp[1]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("check %s %s: %d of %d answers are not as designed:\n  %s", *server, filepath.Base(*dir),
			len(problems), need, strings.Join(problems, "\n  "))
	}
	fmt.Printf("check %s %s: %d answers as designed (%d allow, %d deny)\n", *server, filepath.Base(*dir), need, allows, need-allows)
	return nil
}

// request is an expanded template.
type request struct {
	method, path string
	headers      [][2]string
	body         string
}

var placeholder = regexp.MustCompile(`@([1-9N])@`)

// expand fills a template as load.lua does.
func expand(tmpl string, fields []string, n int) (request, error) {
	var bad error
	fill := func(s string) string {
		return placeholder.ReplaceAllStringFunc(s, func(m string) string {
			if m[1] == 'N' {
				return strconv.Itoa(n)
			}
			k := int(m[1] - '0')
			if k > len(fields) {
				bad = fmt.Errorf("template %q uses %s; the token line has %d fields", tmpl, m, len(fields))
				return ""
			}
			return fields[k-1]
		})
	}
	f := strings.Split(tmpl, "\t")
	if len(f) < 3 {
		return request{}, fmt.Errorf("template %q: want method, path, headers…, body", tmpl)
	}
	r := request{method: fill(f[0]), path: fill(f[1]), body: fill(f[len(f)-1])}
	for _, h := range f[2 : len(f)-1] {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return request{}, fmt.Errorf("template %q: header %q has no colon", tmpl, h)
		}
		r.headers = append(r.headers, [2]string{name, fill(strings.TrimLeft(value, " "))})
	}
	return r, bad
}

// ask sends r and reads the answer: Verdict's decision (200 for allow and
// deny on /v1/decide; 200, 401 or 403 on /v1/check) or OPA's result.
func ask(client *http.Client, base, server string, r request) (bool, []string, error) {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		return false, nil, err
	}
	for _, h := range r.headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, nil, err
	}
	var d struct {
		Allow   *bool    `json:"allow"`
		Reasons []string `json:"reasons"`
		Result  *struct {
			Allow   *bool    `json:"allow"`
			Reasons []string `json:"reasons"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return false, nil, fmt.Errorf("status %d, body %.200q: %v", resp.StatusCode, raw, err)
	}
	if server == "opa" {
		if resp.StatusCode != http.StatusOK || d.Result == nil || d.Result.Allow == nil {
			return false, nil, fmt.Errorf("status %d, body %.300q", resp.StatusCode, raw)
		}
		return *d.Result.Allow, d.Result.Reasons, nil
	}
	if d.Allow == nil {
		return false, nil, fmt.Errorf("status %d, body %.300q", resp.StatusCode, raw)
	}
	wantStatus := []int{http.StatusOK}
	if r.path == "/v1/check" && !*d.Allow {
		wantStatus = []int{http.StatusUnauthorized, http.StatusForbidden}
	}
	if !slices.Contains(wantStatus, resp.StatusCode) {
		return false, nil, fmt.Errorf("status %d for allow %v, body %.300q", resp.StatusCode, *d.Allow, raw)
	}
	return *d.Allow, d.Reasons, nil
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		if sc.Text() != "" {
			out = append(out, sc.Text())
		}
	}
	return out, sc.Err()
}

func readConf(path string) (map[string]string, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	conf := map[string]string{}
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			conf[k] = v
		}
	}
	return conf, nil
}
