package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/filewatch"
)

// handleLive answers GET /health/live: 200 while the process serves.
func (s *Server) handleLive(w http.ResponseWriter, _ *http.Request) {
	setJSONHeaders(w.Header())
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// readiness reports whether the server should receive traffic: a policy is
// loaded, and the source (when it can tell) does not consider it stale.
func (s *Server) readiness() (authz.Status, error) {
	st := s.engine.Status()
	if !st.Ready {
		return st, authz.ErrNotReady
	}
	if r, ok := s.source.(interface{ Ready() error }); ok {
		if err := r.Ready(); err != nil {
			return st, err
		}
	}
	for _, ks := range s.keySets {
		if err := ks.Ready(); err != nil {
			return st, err
		}
	}
	return st, nil
}

// handleReady answers GET /health/ready: 200 once a policy snapshot is
// loaded, 503 before (or when the source reports its policy stale).
func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	st, err := s.readiness()
	body := struct {
		Status   string `json:"status"`
		Revision string `json:"revision,omitempty"`
		Reason   string `json:"reason,omitempty"`
	}{Status: "ready", Revision: st.Revision}
	code := http.StatusOK
	if err != nil {
		body.Status, body.Reason, code = "not_ready", err.Error(), http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}

// statusBody is the /v1/status answer.
type statusBody struct {
	Ready        bool      `json:"ready"`
	Revision     string    `json:"revision,omitempty"`
	Origin       string    `json:"origin,omitempty"`
	LoadedAt     time.Time `json:"loaded_at,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	Loads        uint64    `json:"loads"`
	LoadFailures uint64    `json:"load_failures"`
	// DecisionCache says how the serving snapshot's decisions are cached
	// ("on: keyed on input.subject.claims.roles, ..."), or why not ("off:
	// the policy reads input.context").
	DecisionCache string `json:"decision_cache,omitempty"`
	// Evaluator says which evaluator serves the snapshot ("compiled
	// (planned in 1.2ms)", or "topdown: " and why), and EvaluatorFallbacks
	// how many evaluations the compiled one left to topdown.
	Evaluator          string `json:"evaluator,omitempty"`
	EvaluatorFallbacks uint64 `json:"evaluator_fallbacks"`
	// HeapStops counts evaluations stopped because the heap passed
	// limits.eval_heap_limit while they ran.
	HeapStops uint64 `json:"heap_stops"`
	// Caches are the verified-token and decision caches: entries, estimated
	// bytes and their bound, hits and misses.
	Caches    authz.Caches   `json:"caches"`
	LastError *lastErrorBody `json:"last_error,omitempty"`
	Source    *sourceBody    `json:"source,omitempty"`
	KeySets   []keySetBody   `json:"key_sets,omitempty"`
	// Credentials are the key, certificate and CA files kept in service.
	Credentials []filewatch.Status `json:"credentials,omitempty"`
	Shadow      *ShadowStatus      `json:"shadow,omitempty"`
	Build       *BuildInfo         `json:"build,omitempty"`
	NotReady    string             `json:"not_ready_reason,omitempty"`
}

// keySetBody is one remote key set in /v1/status.
type keySetBody struct {
	jwks.Status
	Age string `json:"age,omitempty"`
}

type lastErrorBody struct {
	Message  string            `json:"message"`
	At       time.Time         `json:"at,omitzero"`
	Revision string            `json:"revision,omitempty"`
	Problems []bundles.Problem `json:"problems,omitempty"`
}

type sourceBody struct {
	Origin             string            `json:"origin,omitempty"`
	Revision           string            `json:"revision,omitempty"`
	LoadedAt           time.Time         `json:"loaded_at,omitzero"`
	LastAttempt        time.Time         `json:"last_attempt,omitzero"`
	LastSuccess        time.Time         `json:"last_success,omitzero"`
	LastError          string            `json:"last_error,omitempty"`
	LastErrorAt        time.Time         `json:"last_error_at,omitzero"`
	LastErrorRevision  string            `json:"last_error_revision,omitempty"`
	Errors             []bundles.Problem `json:"errors,omitempty"`
	Reloads            uint64            `json:"reloads"`
	ReloadErrors       uint64            `json:"reload_errors"`
	LastReloadDuration string            `json:"last_reload_duration,omitempty"`
}

// handleStatus answers GET /v1/status: the revision serving, its origin and
// load time, and the last reload error with file:line:col problems, from
// the engine and (when configured) the source. last_error is the failure
// the source is in when it is in one (the source sees every reload), else
// the engine's.
func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	st, rerr := s.readiness()
	body := statusBody{
		Ready:              rerr == nil,
		Revision:           st.Revision,
		Origin:             st.Origin,
		LoadedAt:           st.LoadedAt,
		LastAttempt:        st.LastAttempt,
		Loads:              st.Loads,
		LoadFailures:       st.LoadFailures,
		DecisionCache:      st.DecisionCache,
		Evaluator:          st.Evaluator,
		EvaluatorFallbacks: st.EvaluatorFallbacks,
		HeapStops:          st.HeapStops,
		Caches:             st.Caches,
	}
	if rerr != nil {
		body.NotReady = rerr.Error()
	}
	if st.LastError != "" {
		body.LastError = &lastErrorBody{Message: st.LastError, At: st.LastErrorAt,
			Revision: st.LastErrorRevision, Problems: st.LastErrorProblems}
	}
	if s.source != nil {
		ss := s.source.Status()
		body.Source = &sourceBody{
			Origin: ss.Origin, Revision: ss.Revision, LoadedAt: ss.LoadedAt,
			LastAttempt: ss.LastAttempt, LastSuccess: ss.LastSuccess,
			LastError: ss.LastError, LastErrorAt: ss.LastErrorAt, LastErrorRevision: ss.LastErrorRevision, Errors: ss.Errors,
			Reloads: ss.Reloads, ReloadErrors: ss.ReloadErrors,
		}
		if ss.LastReloadDuration > 0 {
			body.Source.LastReloadDuration = ss.LastReloadDuration.String()
		}
		// The source counts every reload, those that never reached the
		// engine too, as the verdict_policy_reload* metrics do.
		body.Loads, body.LoadFailures = ss.Reloads, ss.ReloadErrors
		// The source sees every failed reload, those that never reached
		// the engine too (a policy that does not parse, a bundle that does
		// not verify), and clears it when the source recovers.
		if ss.LastError != "" {
			body.LastError = &lastErrorBody{Message: ss.LastError, At: ss.LastErrorAt,
				Revision: ss.LastErrorRevision, Problems: ss.Errors}
		}
	}
	for _, ks := range s.keySets {
		kb := keySetBody{Status: ks.Status()}
		if !kb.ConfirmedAt.IsZero() {
			kb.Age = kb.Status.Age.Round(time.Second).String()
		}
		body.KeySets = append(body.KeySets, kb)
	}
	if s.credentials != nil {
		body.Credentials = s.credentials()
	}
	if s.build != (BuildInfo{}) {
		body.Build = &s.build
	}
	if s.shadow != nil {
		st := s.shadow.Status()
		body.Shadow = &st
	}
	writeJSON(w, http.StatusOK, body)
}

// writeJSON writes v with encoding/json; for answers off the hot path.
func writeJSON(w http.ResponseWriter, code int, v any) {
	setJSONHeaders(w.Header())
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
