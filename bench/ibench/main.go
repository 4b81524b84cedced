// Command ibench times shell commands side by side in interleaved rounds, so that load
// from elsewhere on the machine hits every command alike, and prints each one's median,
// min and max wall-clock time and the ratio of its median to the first command's.
//
//	ibench [-rounds N] [-warmup N] [-json FILE] [-prep NAME=CMD]... NAME=CMD...
//
// A prep command runs, untimed, before every run of the command of the same name (to
// empty a cache, say). The order of the commands rotates from round to round.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

type result struct {
	Name    string    `json:"name"`
	Command string    `json:"command"`
	Times   []float64 `json:"times"` // seconds
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Ratio   float64   `json:"ratio"`
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ", ") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	rounds := flag.Int("rounds", 5, "timed rounds")
	warmup := flag.Int("warmup", 1, "untimed rounds first")
	jsonOut := flag.String("json", "", "write the results as JSON to this file")
	var preps multi
	flag.Var(&preps, "prep", "NAME=CMD run untimed before each run of NAME")
	flag.Parse()

	prep := map[string]string{}
	for _, p := range preps {
		name, cmd, ok := strings.Cut(p, "=")
		if !ok {
			fail("bad -prep %q: want NAME=CMD", p)
		}
		prep[name] = cmd
	}
	var results []*result
	for _, a := range flag.Args() {
		name, cmd, ok := strings.Cut(a, "=")
		if !ok {
			fail("bad command %q: want NAME=CMD", a)
		}
		results = append(results, &result{Name: name, Command: cmd})
	}
	if len(results) == 0 {
		fail("no commands")
	}
	for round := 0; round < *warmup+*rounds; round++ {
		for i := range results {
			r := results[(i+round)%len(results)]
			if p := prep[r.Name]; p != "" {
				if err := sh(p); err != nil {
					fail("prep of %s: %v", r.Name, err)
				}
			}
			start := time.Now()
			if err := sh(r.Command); err != nil {
				fail("%s: %v", r.Name, err)
			}
			if round >= *warmup {
				r.Times = append(r.Times, time.Since(start).Seconds())
			}
		}
	}
	fmt.Printf("%-28s %10s %10s %10s %7s\n", "command", "median", "min", "max", "ratio")
	for _, r := range results {
		s := slices.Clone(r.Times)
		slices.Sort(s)
		r.Median, r.Min, r.Max = median(s), s[0], s[len(s)-1]
		r.Ratio = r.Median / results[0].Median
		fmt.Printf("%-28s %8.0fms %8.0fms %8.0fms %6.2fx\n", r.Name, r.Median*1000, r.Min*1000, r.Max*1000, r.Ratio)
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fail("%v", err)
		}
	}
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func sh(cmd string) error {
	c := exec.Command("/bin/sh", "-c", cmd)
	c.Stdout, c.Stderr = nil, os.Stderr
	out, err := c.Output()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ibench: "+format+"\n", args...)
	os.Exit(1)
}
