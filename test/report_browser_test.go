// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReportRendersInChromium builds the HTML access report after real
// intercepted sessions and opens it in headless Chromium: the DOM it parsed
// must hold the access table with the target and the session chart, and a
// screenshot must come out.
func TestReportRendersInChromium(t *testing.T) {
	s := newInterceptSetup(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not installed (.ci/run installs it): %v", err)
	}
	evidenceSessions(t, s, 3)
	dir := t.TempDir()
	html := filepath.Join(dir, "report.html")
	if out, err := runTollgate("audit", "report", "--config", s.d.cfgPath, "-o", "html", "--out", html); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	// The flags keep Chromium off the network entirely; the page is a
	// local, self-contained file.
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(dir, "profile")}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, chromium, append(args, "--dump-dom", "file://"+html)...)
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
	}
	d := string(dom)
	for _, want := range []string{`id="access-table"`, `<td>echo</td>`, `id="chart-sessions"`, `<svg`, `<rect`, "A.8.15"} {
		if !strings.Contains(d, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	png := filepath.Join(dir, "report.png")
	if p := os.Getenv("TOLLGATE_REPORT_PNG"); p != "" {
		png = p
	}
	cmd = exec.CommandContext(ctx, chromium, append(args, "--screenshot="+png, "--window-size=1280,2000", "file://"+html)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	b, err := os.ReadFile(png)
	if err != nil || len(b) < 10000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %d bytes, %v", len(b), err)
	}
}
