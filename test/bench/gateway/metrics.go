package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/metrics"
)

// Internals are the gateway's own figures for one measured level, from
// the difference of two /metrics scrapes: how the audit writer grouped
// the records and how long its commits and the policy decisions took.
type Internals struct {
	AuditCommits     int     `json:"audit_commits"`
	RecordsPerCommit float64 `json:"records_per_commit"`
	CommitMeanUS     float64 `json:"commit_mean_us"`
	// CommitP99LeUS is the upper bound of the histogram bucket that holds
	// the 99th percentile commit.
	CommitP99LeUS float64 `json:"commit_p99_le_us"`
	PolicyMeanUS  float64 `json:"policy_mean_us"`
}

// metricsSnapshot maps each sample line's series ("name{labels}") to its value.
type metricsSnapshot map[string]float64

// scrape reads the gateway's Prometheus text exposition.
func scrape(ctx context.Context, url string) (metricsSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: newTransport(1)}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	snap := metricsSnapshot{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "portcullis_audit_") && !strings.HasPrefix(line, "portcullis_policy_decision_seconds") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			snap[line[:i]] = v
		}
	}
	return snap, sc.Err()
}

// internals computes the figures of the interval between two scrapes.
func internals(before, after metricsSnapshot) *Internals {
	d := func(series string) float64 { return after[series] - before[series] }
	commits := d("portcullis_audit_commit_seconds_count")
	if commits <= 0 {
		return nil
	}
	in := &Internals{AuditCommits: int(commits),
		RecordsPerCommit: round(d("portcullis_audit_records_total")/commits, 2),
		CommitMeanUS:     round(d("portcullis_audit_commit_seconds_sum")/commits*1e6, 1)}
	for _, le := range metrics.CommitBuckets {
		if d(`portcullis_audit_commit_seconds_bucket{le="`+strconv.FormatFloat(le, 'g', -1, 64)+`"}`) >= 0.99*commits {
			in.CommitP99LeUS = le * 1e6
			break
		}
	}
	var polSum, polCount float64
	for _, stage := range []string{"name", "conditions"} {
		polSum += d(`portcullis_policy_decision_seconds_sum{stage="` + stage + `"}`)
		polCount += d(`portcullis_policy_decision_seconds_count{stage="` + stage + `"}`)
	}
	if polCount > 0 {
		in.PolicyMeanUS = round(polSum/polCount*1e6, 2)
	}
	return in
}
