package main

import (
	"bufio"
	"flag"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// figures are the script's results: section -> series -> x -> y, read from
// lines "section<TAB>series<TAB>x<TAB>y"; lines "meta<TAB>name<TAB>text"
// describe the run.
type figures struct {
	data map[string]map[string]map[float64]float64
	meta map[string]string
}

func readFigures(path string) (*figures, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fg := &figures{data: map[string]map[string]map[float64]float64{}, meta: map[string]string{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		p := strings.Split(sc.Text(), "\t")
		if len(p) == 3 && p[0] == "meta" {
			fg.meta[p[1]] = p[2]
			continue
		}
		if len(p) != 4 {
			return nil, fmt.Errorf("%s:%d: want 4 tab-separated fields", path, n)
		}
		x, err1 := strconv.ParseFloat(p[2], 64)
		y, err2 := strconv.ParseFloat(p[3], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s:%d: x and y must be numbers", path, n)
		}
		if fg.data[p[0]] == nil {
			fg.data[p[0]] = map[string]map[float64]float64{}
		}
		if fg.data[p[0]][p[1]] == nil {
			fg.data[p[0]][p[1]] = map[float64]float64{}
		}
		fg.data[p[0]][p[1]][x] = y
	}
	return fg, sc.Err()
}

// get returns one figure, and whether the run produced it.
func (fg *figures) get(section, series string, x float64) (float64, bool) {
	y, ok := fg.data[section][series][x]
	return y, ok
}

// xs returns the x values of a series in order.
func (fg *figures) xs(section, series string) []float64 {
	var out []float64
	for x := range fg.data[section][series] {
		out = append(out, x)
	}
	sort.Float64s(out)
	return out
}

// chart writes a PNG line plot of the given series of one section.
func (fg *figures) chart(dir, name, title, xlabel, ylabel string, logX bool, section string, series ...string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	for i, s := range series {
		var pts plotter.XYs
		for _, x := range fg.xs(section, s) {
			if logX && x <= 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: x, Y: fg.data[section][s][x]})
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		sc.Color = l.Color
		sc.Shape = plotutil.Shape(i)
		l.Dashes = plotutil.Dashes(i % 2)
		p.Add(l, sc)
		p.Legend.Add(strings.ReplaceAll(s, "_", " "), l, sc)
	}
	p.Y.Min = 0
	p.BackgroundColor = color.White
	return p.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(dir, name))
}

// report writes docs/scale.md and its plots from the script's results.
func report(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fs.String("in", "results.tsv", "the script's figures")
	md := fs.String("md", "docs/scale.md", "markdown to write")
	plots := fs.String("plots", "docs/scale", "directory of the PNG plots")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fg, err := readFigures(*in)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*plots, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(*md), *plots)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		name, title, x, y string
		log               bool
		section           string
		series            []string
	}{
		{"keyspace-rate.png", "Requests/s by keyspace size (32 clients)", "keys in the store", "requests/s", true, "keyspace", []string{"bolt_get", "bolt_put", "postgres_get", "postgres_put"}},
		{"keyspace-p99.png", "p99 latency by keyspace size", "keys in the store", "p99 ms", true, "keyspace", []string{"bolt_get_p99", "bolt_put_p99", "postgres_get_p99", "postgres_put_p99"}},
		{"keyspace-disk.png", "Bytes on disk per key (100-byte values)", "keys in the store", "bytes per key", true, "keyspace", []string{"bolt_bytes_per_key", "postgres_bytes_per_key"}},
		{"values.png", "MB/s by value size: serve (bolt) and the bare server", "value bytes", "MB/s", true, "values", []string{"serve_get", "bare_get", "serve_put", "bare_put"}},
		{"listing.png", "Server RSS while paging through every key", "seconds", "RSS MiB", false, "listing", []string{"rss_mib"}},
		{"crl.png", "Full TLS handshakes/s by CRL size", "revoked serials in the CRL", "handshakes/s", false, "crl", []string{"handshakes"}},
		{"policy.png", "GET/s by policy size (0: no policy)", "identities in the policy", "GET/s", false, "policy", []string{"get"}},
		{"idle.png", "Server RSS per idle mTLS connection", "idle connections", "KiB per connection", false, "idle", []string{"serve_kib_per_conn", "bare_kib_per_conn"}},
		{"watch.png", "Watch delivery p99 by watchers", "watchers", "p99 ms", true, "watch", []string{"p99_ms"}},
	} {
		if fg.data[c.section] == nil {
			continue
		}
		if err := fg.chart(*plots, c.name, c.title, c.x, c.y, c.log, c.section, c.series...); err != nil {
			return fmt.Errorf("plot %s: %w", c.name, err)
		}
	}
	var b strings.Builder
	writeMarkdown(&b, fg, rel)
	tmp := *md + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, *md)
}

func num(v float64, ok bool) string {
	switch {
	case !ok:
		return "-"
	case v == float64(int64(v)) && v < 100:
		return strconv.FormatInt(int64(v), 10)
	case v >= 100:
		return commas(int64(v + 0.5))
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// goal prints a ratio and whether it meets a goal (>= g, or <= g when less).
func goal(w io.Writer, label string, r float64, ok bool, g float64, less bool, unit string) {
	met := "-"
	if ok {
		if (!less && r >= g) || (less && r <= g) {
			met = "yes"
		} else {
			met = "**no**"
		}
	}
	op := "≥"
	if less {
		op = "≤"
	}
	fmt.Fprintf(w, "| %s | %s%s | %s %g%s | %s |\n", label, num(r, ok), unit, op, g, unit, met)
}

func ratio(fg *figures, s1, a string, x1 float64, s2, b string, x2 float64) (float64, bool) {
	va, ok1 := fg.get(s1, a, x1)
	vb, ok2 := fg.get(s2, b, x2)
	if !ok1 || !ok2 || vb == 0 {
		return 0, false
	}
	return va / vb, true
}
