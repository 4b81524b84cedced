package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

// table writes aligned columns as docker's tables do.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
}

func row(tw *tabwriter.Writer, cols ...string) {
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// barsFit tells whether w is a terminal wide enough to draw progress bars on. A
// pseudo-terminal that reports no size gets plain lines.
func barsFit(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return false
	}
	width, _, err := term.GetSize(int(f.Fd()))
	return err == nil && width >= 40
}

// humanSize writes sizes in decimal units, as docker does: 2.1MB, 512kB.
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}

// humanAgo says how long ago t was: "3 minutes ago", "2 years ago".
func humanAgo(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	d := time.Since(t)
	if d < time.Second {
		return "Less than a second ago"
	}
	plural := func(n int, unit string) string {
		if n == 1 {
			if unit == "hour" {
				return "An hour ago"
			}
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Minute:
		return plural(int(d.Seconds()), "second")
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute")
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour")
	case d < 14*24*time.Hour:
		return plural(int(d.Hours()/24), "day")
	case d < 60*24*time.Hour:
		return plural(int(d.Hours()/24/7), "week")
	case d < 2*365*24*time.Hour:
		return plural(int(d.Hours()/24/30), "month")
	}
	return plural(int(d.Hours()/24/365), "year")
}

// shortID is the first 12 hex digits of a digest.
func shortID(digest string) string {
	s := strings.TrimPrefix(digest, "sha256:")
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// printEach prints, as one JSON list, what get returns for each of names, and then
// returns the errors of those it could not get.
func printEach[T any](w io.Writer, names []string, get func(name string) (T, error)) error {
	out := []T{}
	var errs []error
	for _, n := range names {
		v, err := get(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, v)
	}
	if err := printJSON(w, out); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// printList prints what an ls command lists: as JSON with --format json, one name a
// line with -q, or a table.
func printList[T any](w io.Writer, items []T, format string, quiet bool, name func(T) string, header []string, cols func(T) []string) error {
	switch {
	case format == "json":
		if items == nil {
			items = []T{}
		}
		return printJSON(w, items)
	case format != "":
		return fmt.Errorf("unknown format %q (want json)", format)
	case quiet:
		for _, it := range items {
			fmt.Fprintln(w, name(it))
		}
		return nil
	}
	tw := table(w)
	row(tw, header...)
	for _, it := range items {
		row(tw, cols(it)...)
	}
	return tw.Flush()
}
