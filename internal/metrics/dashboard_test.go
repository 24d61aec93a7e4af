package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

const dashboardFile = "../../deploy/grafana/portcullis.json"

var metricNameRE = regexp.MustCompile(`portcullis_[a-z_]+`)

// dashboard is the part of a Grafana dashboard the test checks.
type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	SchemaVersion int     `json:"schemaVersion"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

// TestDashboard: deploy/grafana/portcullis.json is an importable
// dashboard whose every query names only metrics this package registers,
// and that shows every one of them.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.FromSlash(dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion != 39 || d.UID == "" || d.Title == "" {
		t.Errorf("schemaVersion %d, uid %q, title %q; want 39 and both set", d.SchemaVersion, d.UID, d.Title)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one Prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}

	// The registered families and which of them are histograms.
	registered := map[string]dto.MetricType{}
	mfs, err := scrapeReady(t, nil).Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		registered[mf.GetName()] = mf.GetType()
	}
	known := func(name string) bool {
		if _, ok := registered[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && registered[base] == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	check := func(where, query string) {
		names := metricNameRE.FindAllString(query, -1)
		if len(names) == 0 {
			t.Errorf("%s: query %q names no portcullis_ metric", where, query)
		}
		for _, n := range names {
			if !known(n) {
				t.Errorf("%s: %s is not a registered metric (query %q)", where, n, query)
			}
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(n, suffix); ok && registered[base] == dto.MetricType_HISTOGRAM {
					n = base
				}
			}
			used[n] = true
		}
	}

	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource %+v, want uid ${DS_PROMETHEUS}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				check("panel "+p.Title, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			check("variable "+v.Name, v.Definition)
		}
	}
	for _, f := range families {
		if !used[f] {
			t.Errorf("no panel shows %s", f)
		}
	}
}
