package attack

import (
	"encoding/json"
	"time"
)

// Outcome is the verdict on one scenario.
type Outcome string

// The outcomes. Upper case marks the ones that fail a run.
const (
	// Refused: the attack was stopped where it should have been.
	Refused Outcome = "refused"
	// Succeeded: the attack got through (a handshake that should have
	// failed completed, a request reached an impostor, a write was
	// accepted).
	Succeeded Outcome = "SUCCEEDED"
	// Passed: the control worked.
	Passed Outcome = "ok"
	// Failed: the control did not work, so refusals prove nothing.
	Failed Outcome = "FAILED"
	// Skipped: the scenario could not run here (for example it needs the
	// CA key); the reason is in Observed.
	Skipped Outcome = "skipped"
	// Broken: the scenario could not be carried out (the server was
	// unreachable, attacker material could not be made).
	Broken Outcome = "ERROR"
)

// OK reports whether the outcome lets a run pass.
func (o Outcome) OK() bool { return o == Refused || o == Passed || o == Skipped }

// Result is what happened in one scenario.
type Result struct {
	Scenario  string  `json:"scenario"`
	Attacker  string  `json:"attacker"`   // what the attacker did
	Expected  string  `json:"expected"`   // what should happen
	Outcome   Outcome `json:"outcome"`    // the verdict
	Observed  string  `json:"observed"`   // what happened, in words
	ServerSaw string  `json:"server_saw"` // the server's side: its logged reason, or what the impostor received
	ClientSaw string  `json:"client_saw"` // the error (or answer) the connecting side got
	Key       string  `json:"key,omitempty"`
	// Wrote is true when the attacker's write reached the store.
	Wrote    bool          `json:"wrote"`
	Duration time.Duration `json:"-"`
}

// MarshalJSON adds the duration in milliseconds.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}{plain(r), r.Duration.Milliseconds()})
}

// StoreCheck is the final check that no refused attacker wrote anything.
type StoreCheck struct {
	Done  bool     `json:"done"`            // the store could be checked
	Found []string `json:"found,omitempty"` // attacker keys present in the store
	Note  string   `json:"note"`
}

// Report is the result of a run.
type Report struct {
	Mode       string        `json:"mode"`   // "demo" or "remote"
	Server     string        `json:"server"` // the address attacked
	Store      string        `json:"store,omitempty"`
	Started    time.Time     `json:"started"`
	Duration   time.Duration `json:"-"`
	Results    []Result      `json:"results"`
	StoreCheck StoreCheck    `json:"store_check"`
	OK         bool          `json:"ok"` // every attack refused, the control passed, the store clean
}

// MarshalJSON adds the duration in milliseconds.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	return json.Marshal(struct {
		plain
		DurationMS int64 `json:"duration_ms"`
	}{plain(r), r.Duration.Milliseconds()})
}

// Failures returns the results that fail the run.
func (r *Report) Failures() []Result {
	var out []Result
	for _, res := range r.Results {
		if !res.Outcome.OK() {
			out = append(out, res)
		}
	}
	return out
}

// Count returns how many results have outcome o.
func (r *Report) Count(o Outcome) int {
	n := 0
	for _, res := range r.Results {
		if res.Outcome == o {
			n++
		}
	}
	return n
}

// finish computes OK.
func (r *Report) finish() {
	r.OK = len(r.Failures()) == 0 && (!r.StoreCheck.Done || len(r.StoreCheck.Found) == 0)
}

// Progress is reported while a run goes: set-up steps (Step set, Result
// nil), then each scenario when it starts (Result nil) and when it ends.
type Progress struct {
	Step     string  // a set-up or clean-up step, in words
	Index    int     // 1-based position of the scenario
	Total    int     // number of scenarios in the run
	Scenario string  // name of the scenario
	Result   *Result // set when the scenario has ended
}
