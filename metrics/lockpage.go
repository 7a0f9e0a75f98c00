package metrics

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ddlguard/ddlguard/proxy"
)

// The /locks page: for a person during an incident. It shows the blocking
// trees from the lock monitor's last poll (who blocks whom, in which state,
// for how long, running what) and the last decisions ddlguard made. Plain
// server-rendered HTML without scripts or external assets; it reloads
// itself every refreshSeconds.

const refreshSeconds = 2

// lockRow is one session in a blocking tree, indented by Depth.
type lockRow struct {
	Depth       int
	PID         int
	State       string
	User, DB    string
	Application string
	Client      string
	XactAge     string
	StateAge    string
	QueryStart  string
	Wait        string // what it waits for, "" for a root
	Blocks      int    // sessions behind it, directly or not
	Query       string
	Culprit     bool // a root idle in a transaction: the usual suspect
}

type lockPage struct {
	Refresh    int
	Now        string
	Monitor    string // "", or why there is no data
	Taken      string
	Waiting    int
	Longest    string
	IdleInXact int
	Rows       []lockRow
	Decisions  []decisionRow
	HasMonitor bool
	NoBlockers bool
}

type decisionRow struct {
	Time, Action, Rule, Kind, Who, Application, Statement, Relations string
	Conn                                                             uint64
	PID                                                              uint32
}

func age(seconds float64) string {
	if seconds < 0 {
		return ""
	}
	return (time.Duration(seconds * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// rows flattens the blocking trees, depth first, each session once.
func (s *Snapshot) rows() []lockRow {
	var out []lockRow
	seen := map[int]bool{}
	var walk func(pid, depth int)
	walk = func(pid, depth int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		r := lockRow{Depth: depth, PID: pid, State: s.stateOf(pid), Blocks: len(s.blockedBy(pid))}
		if x, ok := s.Sessions[pid]; ok {
			r.User, r.DB, r.Application, r.Client = x.User, x.Database, x.Application, x.Client
			r.XactAge, r.StateAge = age(x.XactAge), age(x.StateAge)
			if !x.QueryStart.IsZero() {
				r.QueryStart = x.QueryStart.Local().Format("15:04:05.000")
			}
			r.Query = shorten(x.Query, 300)
			if x.Waiting {
				r.Wait = x.WaitMode + " on " + x.WaitType
				if x.Relation != "" {
					r.Wait = x.WaitMode + " on " + x.Relation
				}
				r.Wait += " for " + age(x.WaitAge)
			}
		} else if pid == 0 {
			r.Query = "(a prepared transaction: see pg_prepared_xacts; COMMIT PREPARED or ROLLBACK PREPARED ends it)"
		}
		r.Culprit = depth == 0 && strings.HasPrefix(r.State, "idle in transaction")
		out = append(out, r)
		for _, w := range s.Blocks[pid] {
			walk(w, depth+1)
		}
	}
	for _, root := range s.Roots {
		walk(root, 0)
	}
	// Cycles (a deadlock the server is about to break) have no root.
	var rest []int
	for b := range s.Blocks {
		if !seen[b] {
			rest = append(rest, b)
		}
	}
	slices.Sort(rest)
	for _, b := range rest {
		walk(b, 0)
	}
	return out
}

func (a *Admin) serveLocks(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(w, r) {
		return
	}
	p := lockPage{Refresh: refreshSeconds, Now: time.Now().Format("2006-01-02 15:04:05 MST"), HasMonitor: a.monitor != nil}
	var snap *Snapshot
	if a.monitor == nil {
		p.Monitor = "The lock monitor is not configured (set monitor.dsn or DDLGUARD_MONITOR_DSN for a role with pg_monitor): no blocking tree. Decisions are still listed below."
	} else if snap = a.monitor.Snapshot(); snap == nil {
		p.Monitor = "The lock monitor has not completed a poll yet."
	} else {
		if snap.Err != "" {
			p.Monitor = "The last poll failed (" + snap.Err + "); showing the last good one."
		}
		p.Taken = snap.Taken.Format("15:04:05.000")
		var longest float64
		for _, x := range snap.Sessions {
			if x.Waiting {
				p.Waiting++
				longest = max(longest, x.WaitAge)
			}
			if strings.HasPrefix(x.State, "idle in transaction") {
				p.IdleInXact++
			}
		}
		p.Longest = age(longest)
		p.Rows = snap.rows()
		p.NoBlockers = len(p.Rows) == 0
	}
	if a.recent != nil {
		for _, ev := range a.recent.List() {
			p.Decisions = append(p.Decisions, decisionFor(ev))
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := lockTemplate.Execute(w, p); err != nil {
		a.log.Warn("rendering /locks", "err", err)
	}
}

func decisionFor(ev proxy.DecisionEvent) decisionRow {
	action := ev.Action
	if len(ev.Warnings) > 0 {
		action += " (warn: " + strings.Join(ev.Warnings, ", ") + ")"
	}
	return decisionRow{Time: ev.Time.Local().Format("15:04:05.000"), Action: action, Rule: ev.Rule, Kind: ev.Kind,
		Who: ev.User + "@" + ev.Database, Application: ev.Application, Statement: shorten(ev.Statement, 300),
		Relations: strings.Join(ev.Relations, "; "), Conn: ev.ConnID, PID: ev.BackendPID}
}

var lockTemplate = template.Must(template.New("locks").Funcs(template.FuncMap{
	"indent": func(d int) string { return fmt.Sprintf("padding-left:%dem", 1+2*d) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>ddlguard: locks</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.5em 0 .4em}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}td.q{font-family:ui-monospace,monospace;font-size:12px;max-width:40em;word-break:break-all}
tr.culprit td{background:#fde2e1}.state-idle{color:#b00;font-weight:600}.note{background:#fff6d5;padding:.4em .8em;border-radius:4px}
.summary span{margin-right:2em}.reject{color:#b00}.rewrite{color:#05a}.timeout{color:#a60}
</style></head><body>
<h1>ddlguard: locks</h1>
<p class="summary"><span>now {{.Now}}</span>{{if .Taken}}<span>poll {{.Taken}}</span><span>waiting for a lock: <b id="waiting">{{.Waiting}}</b></span><span>longest wait: <b>{{.Longest}}</b></span><span>idle in transaction: <b>{{.IdleInXact}}</b></span>{{end}}</p>
{{if .Monitor}}<p class="note">{{.Monitor}}</p>{{end}}
<h2>Blocking tree</h2>
{{if .Rows}}<table id="blocking">
<tr><th>pid</th><th>state</th><th>blocks</th><th>waits for</th><th>user@db</th><th>application</th><th>client</th><th>xact age</th><th>in state</th><th>query start</th><th>query</th></tr>
{{range .Rows}}<tr class="{{if .Culprit}}culprit{{end}}" data-pid="{{.PID}}">
<td style="{{indent .Depth}};white-space:nowrap">{{if .Depth}}↳ {{end}}<b>{{.PID}}</b></td>
<td class="{{if .Culprit}}state-idle{{end}}">{{.State}}</td><td>{{if .Blocks}}{{.Blocks}}{{end}}</td><td>{{.Wait}}</td>
<td>{{.User}}@{{.DB}}</td><td>{{.Application}}</td><td>{{.Client}}</td><td>{{.XactAge}}</td><td>{{.StateAge}}</td><td>{{.QueryStart}}</td><td class="q">{{.Query}}</td></tr>
{{end}}</table>
<p>A root highlighted in red is idle in a transaction while others wait: end it in the application, or <code>SELECT pg_terminate_backend(pid)</code>.</p>
{{else if .NoBlockers}}<p>No session waits for a lock.</p>{{end}}
<h2>Recent decisions</h2>
{{if .Decisions}}<table id="decisions">
<tr><th>time</th><th>action</th><th>rule</th><th>kind</th><th>user@db</th><th>application</th><th>conn</th><th>backend pid</th><th>locks</th><th>statement (literals removed)</th></tr>
{{range .Decisions}}<tr><td>{{.Time}}</td><td class="{{.Action}}">{{.Action}}</td><td>{{.Rule}}</td><td>{{.Kind}}</td><td>{{.Who}}</td><td>{{.Application}}</td><td>{{.Conn}}</td><td>{{.PID}}</td><td>{{.Relations}}</td><td class="q">{{.Statement}}</td></tr>
{{end}}</table>{{else}}<p>No decisions other than plain allows yet.</p>{{end}}
</body></html>
`))
