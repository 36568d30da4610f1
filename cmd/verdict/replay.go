package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/printable"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// maxLogLine bounds one decision-log line read by replay: the largest
// record a decision log writes with its input, and its line end ("\n", or
// "\r\n" from a tool that rewrote the log). bufio.Scanner counts the line
// end against its bound: without it, a record of exactly
// decisionlog.LargestRecordBytes stopped the whole replay.
const maxLogLine = decisionlog.LargestRecordBytes + len("\r\n")

func newReplayCommand() *cobra.Command {
	var (
		logFile     string
		policies    string
		bundle      string
		entrypoint  string
		evaluator   string
		asJSON      bool
		truncatedOK bool
		followLinks bool
		allowNet    bool
	)
	cmd := &cobra.Command{
		Use:   "replay --log FILE (--policies PATH | --bundle FILE) [--json]",
		Short: "Re-evaluate recorded decisions against a candidate policy and report what flips",
		Long: `Replay reads a decision log (one JSON record per line, as verdict serve writes
it with the input document of each decision), evaluates every recorded input
against the candidate policies of --policies (a directory, a .rego file or a
bundle file) or --bundle (a bundle file) as of the decision's recorded time,
and reports how many decisions stay the same and which flip: allow to deny,
deny to allow, or an error (naming at most 1000 of them, and 1000 of those
whose reasons changed, 16 MiB in all; the others are counted). A decision
that failed in its policy was a deny: a candidate allowing it is a flip, one
failing as well answers the same.
Records without an input (requests refused before any policy ran, such as an
invalid token) are skipped. Records written without their input because they
were over decision_log.max_record_bytes ("input_truncated": true) are counted
apart, as truncated: they are decisions that could not be compared, and a
client able to make its requests large would otherwise keep them out of the
gate.

Exit status: 0 nothing flipped or erred, 1 something did (so that it gates a
policy change in CI) or a record was truncated (unless --allow-truncated),
2 a usage error, a candidate that does not load (its problems printed as
file:line:col), or a log with no decision to replay (empty, or without
inputs: nothing was compared).`,
		Example: `  verdict replay --log decisions.jsonl --policies ./candidate
  verdict replay --log decisions.jsonl --policies bundle.tar.gz --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if logFile == "" {
				return usageError("--log is required")
			}
			switch {
			case policies == "" && bundle == "":
				return usageError("name the candidate: --policies with a directory (. for this one) or a .rego file, or --bundle with a bundle file")
			case policies != "" && bundle != "":
				return usageError("name the candidate once: --policies or --bundle")
			case bundle != "":
				if kind, err := kindOf(bundle); err == nil && kind != policyBundle {
					return usageError("--bundle %s: not a bundle file", bundle)
				}
				policies = bundle
			}
			snap, err := readPolicies(policies, nil, followLinks)
			if err != nil {
				return loadError(err)
			}
			ev, err := authz.ParseEvaluator(evaluator)
			if err != nil {
				return usageError("--evaluator: %v", err)
			}
			engine, err := authz.New(authz.Options{Entrypoint: entrypoint, Evaluator: ev, NoNetwork: !allowNet})
			if err != nil {
				return usageError("%v", err)
			}
			if err := engine.Load(cmd.Context(), snap); err != nil {
				return loadError(err)
			}
			f, err := os.Open(logFile)
			if err != nil {
				return usageError("--log: %v", err)
			}
			defer f.Close()
			report, err := replayLog(cmd, engine, f)
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			report.Revision = snap.Revision
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), report); err != nil {
					return &exitCode{code: exitError, err: err}
				}
			} else {
				report.print(cmd.OutOrStdout())
			}
			if report.AllowToDeny+report.DenyToAllow+report.Errors > 0 {
				return &exitCode{code: exitDeny}
			}
			if report.Truncated > 0 && !truncatedOK {
				return &exitCode{code: exitDeny, err: fmt.Errorf("%d decisions were logged without their input (over decision_log.max_record_bytes) and not replayed: raise it, or pass --allow-truncated", report.Truncated)}
			}
			if report.Total == report.Skipped+report.Truncated {
				// Nothing flipped because nothing was replayed: a gate in
				// CI fed an empty or mistaken log must not pass on no
				// evidence.
				return usageError("nothing was replayed: the log holds no decision with its input (decision_log must record inputs)")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&logFile, "log", "", "decision log to replay (JSON lines)")
	fl.StringVar(&policies, "policies", "", "candidate policies: a directory, a .rego file or a bundle file")
	fl.StringVar(&bundle, "bundle", "", "candidate bundle file (.tar.gz)")
	fl.StringVar(&entrypoint, "entrypoint", "", `policy package to evaluate (default "authz")`)
	fl.StringVar(&evaluator, "evaluator", "auto", "how to evaluate: auto, compiled or topdown (replay a log under the other evaluator to compare them)")
	fl.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fl.BoolVar(&truncatedOK, "allow-truncated", false, `exit 0 when records written without their input ("input_truncated": true) are all that was not replayed`)
	addFollowLinks(fl, &followLinks)
	addAllowNet(fl, &allowNet)
	return cmd
}

// replayReport is what replay found. Its JSON is the --json output.
type replayReport struct {
	Revision string `json:"revision"`
	Total    int    `json:"total"`
	Skipped  int    `json:"skipped"`
	// Truncated counts the records written without their input because
	// they were too large ("input_truncated": true), not in Skipped.
	Truncated      int    `json:"truncated"`
	Same           int    `json:"same"`
	ReasonsChanged int    `json:"reasons_changed"`
	AllowToDeny    int    `json:"allow_to_deny"`
	DenyToAllow    int    `json:"deny_to_allow"`
	Errors         int    `json:"errors"`
	Flips          []flip `json:"flips"`
	// FlipsNotListed counts the flips (and errors) counted above but left
	// out of Flips, past maxListed or maxListedBytes.
	FlipsNotListed int `json:"flips_not_listed"`
	// Reasons are the decisions whose answer stayed and whose reasons
	// changed (counted in ReasonsChanged and Same).
	Reasons []flip `json:"reasons_changed_decisions"`
	// ReasonsNotListed counts those left out of Reasons, as FlipsNotListed.
	ReasonsNotListed int     `json:"reasons_changed_not_listed"`
	Elapsed          float64 `json:"elapsed_seconds"`

	listedBytes int // the bytes of the decisions listed, in both lists
}

// maxListed bounds how many decisions a report lists in Flips and in
// Reasons each, and maxListedBytes the bytes of the decisions listed in
// both (IDs, reasons, errors). A log is read from outside: a report that
// kept every decision that flipped held as much memory as the log was
// large (millions of records, each up to a line of maxLogLine). Past
// either bound a decision is counted (the counts, and the exit status,
// stay exact) but not listed.
const (
	maxListed      = 1000
	maxListedBytes = 16 << 20
)

// list appends f to *to, the report's list of flips or of reasons changed,
// unless a bound is reached: then it counts f in *notListed.
func (r *replayReport) list(to *[]flip, notListed *int, f flip) {
	n := len(f.DecisionID) + len(f.Error)
	for _, s := range f.Was.Reasons {
		n += len(s) + 16
	}
	for _, s := range f.Now.Reasons {
		n += len(s) + 16
	}
	if len(*to) >= maxListed || r.listedBytes+n > maxListedBytes {
		*notListed++
		return
	}
	r.listedBytes += n
	*to = append(*to, f)
}

// flip is one decision whose answer changed, or errs under the candidate.
type flip struct {
	DecisionID string  `json:"decision_id"`
	Was        outcome `json:"was"`
	Now        outcome `json:"now"`
	Error      string  `json:"error,omitempty"`
}

type outcome struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
}

// loggedDecision is the part of a decision-log record replay reads.
type loggedDecision struct {
	DecisionID string          `json:"decision_id"`
	Time       time.Time       `json:"time"`
	Allow      bool            `json:"allow"`
	Reasons    []string        `json:"reasons"`
	Error      string          `json:"error"`
	Input      json.RawMessage `json:"input"`
	// InputTruncated marks a record written without its input, over
	// decision_log.max_record_bytes.
	InputTruncated bool `json:"input_truncated"`
}

// replayLog evaluates every record of log against engine.
func replayLog(cmd *cobra.Command, engine *authz.Engine, log io.Reader) (*replayReport, error) {
	start := time.Now()
	r := &replayReport{Flips: []flip{}, Reasons: []flip{}}
	// The reason a record of a decision cut short holds, exactly (a policy
	// error's own text may end the same way).
	cutShort := authz.ReasonFor(&authz.Refusal{Category: authz.ErrPolicy, Detail: authz.InterruptedDetail})
	heapStopped := authz.ReasonFor(&authz.Refusal{Category: authz.ErrPolicy, Detail: authz.HeapLimitDetail})
	sc := bufio.NewScanner(log)
	sc.Buffer(make([]byte, 0, 64<<10), maxLogLine)
	line := 0
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var rec loggedDecision
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("--log line %d: not a decision record: %w", line, err)
		}
		r.Total++
		if rec.InputTruncated {
			r.Truncated++ // a decision that ran, but cannot be compared
			continue
		}
		if len(rec.Input) == 0 || rec.Error != "" && len(rec.Reasons) == 1 && (rec.Reasons[0] == cutShort || rec.Reasons[0] == heapStopped) {
			r.Skipped++ // refused before any policy ran, or cut short or stopped by the heap: nothing to compare
			continue
		}
		var input any
		dec := json.NewDecoder(bytes.NewReader(rec.Input))
		dec.UseNumber()
		if err := dec.Decode(&input); err != nil {
			return nil, fmt.Errorf("--log line %d: input: %w", line, err)
		}
		d, err := engine.EvaluateInput(cmd.Context(), input, authz.InputOptions{Time: rec.Time})
		was := outcome{Allow: rec.Allow, Reasons: nonNil(rec.Reasons)}
		now := outcome{Allow: d.Allow, Reasons: nonNil(d.Reasons)}
		switch {
		case err != nil && rec.Error != "":
			r.Same++ // it failed then too: a deny both times
		case err != nil:
			r.Errors++
			r.list(&r.Flips, &r.FlipsNotListed, flip{DecisionID: rec.DecisionID, Was: was, Now: now, Error: err.Error()})
		case was.Allow && !now.Allow:
			r.AllowToDeny++
			r.list(&r.Flips, &r.FlipsNotListed, flip{DecisionID: rec.DecisionID, Was: was, Now: now})
		case !was.Allow && now.Allow:
			r.DenyToAllow++
			r.list(&r.Flips, &r.FlipsNotListed, flip{DecisionID: rec.DecisionID, Was: was, Now: now})
		case !slices.Equal(was.Reasons, now.Reasons):
			r.ReasonsChanged++
			r.Same++
			r.list(&r.Reasons, &r.ReasonsNotListed, flip{DecisionID: rec.DecisionID, Was: was, Now: now})
		default:
			r.Same++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--log: %w", err)
	}
	r.Elapsed = time.Since(start).Seconds()
	return r, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// quoted is reasons as Go writes a list of strings (%q), made printable:
// a reason is the policy's text, which may hold a CI runner's command.
func quoted(reasons []string) string { return printable.String(fmt.Sprintf("%q", reasons)) }

// print writes the report for a reader.
func (r *replayReport) print(w io.Writer) {
	fmt.Fprintf(w, "replayed %d decisions against revision %s in %.2fs: %d same (%d with other reasons), %d allow→deny, %d deny→allow, %d errors, %d skipped (no input, or cut short), %d truncated (logged without their input: too large)\n",
		r.Total, printable.String(r.Revision), r.Elapsed, r.Same, r.ReasonsChanged, r.AllowToDeny, r.DenyToAllow, r.Errors, r.Skipped, r.Truncated)
	for _, f := range r.Flips {
		if f.Error != "" {
			fmt.Fprintf(w, "  %s: error (was allow=%v %s): %s\n", printable.String(f.DecisionID), f.Was.Allow, quoted(f.Was.Reasons), printable.Lines(f.Error, "    "))
			continue
		}
		fmt.Fprintf(w, "  %s: allow=%v %s → allow=%v %s\n", printable.String(f.DecisionID), f.Was.Allow, quoted(f.Was.Reasons), f.Now.Allow, quoted(f.Now.Reasons))
	}
	if r.FlipsNotListed > 0 {
		fmt.Fprintf(w, "  and %d more flips, not listed\n", r.FlipsNotListed)
	}
	if len(r.Reasons) > 0 || r.ReasonsNotListed > 0 {
		fmt.Fprintln(w, "the same answer, with other reasons:")
		for _, f := range r.Reasons {
			fmt.Fprintf(w, "  %s: allow=%v %s → %s\n", printable.String(f.DecisionID), f.Was.Allow, quoted(f.Was.Reasons), quoted(f.Now.Reasons))
		}
		if r.ReasonsNotListed > 0 {
			fmt.Fprintf(w, "  and %d more, not listed\n", r.ReasonsNotListed)
		}
	}
}
