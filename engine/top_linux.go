package engine

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// readProcess reads what top shows of process pid from /proc; a process gone meanwhile
// is not ok.
func readProcess(pid int) (Process, bool) {
	dir := fmt.Sprintf("/proc/%d/", pid)
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return Process{}, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses; it ends at the
	// last ')'.
	end := bytes.LastIndexByte(stat, ')')
	start := bytes.IndexByte(stat, '(')
	if end < 0 || start < 0 || start > end {
		return Process{}, false
	}
	comm := string(stat[start+1 : end])
	f := strings.Fields(string(stat[end+1:]))
	if len(f) < 13 {
		return Process{}, false
	}
	p := Process{PID: pid, State: f[0]}
	p.PPID, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	p.CPUTicks = utime + stime
	if status, err := os.ReadFile(dir + "status"); err == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if rest, ok := strings.CutPrefix(l, "Uid:"); ok {
				if uf := strings.Fields(rest); len(uf) > 0 {
					p.UID, _ = strconv.Atoi(uf[0])
				}
				break
			}
		}
	}
	cmdline, _ := os.ReadFile(dir + "cmdline")
	p.Command = strings.TrimSpace(strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " "))
	if p.Command == "" {
		p.Command = "[" + comm + "]"
	}
	return p, true
}
