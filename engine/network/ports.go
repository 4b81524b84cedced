package network

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// ParsePort parses a published port as docker run -p takes it:
// [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], where either port may be a range (8000-8009;
// the two ranges then have the same length) and a missing or empty host port is one
// the engine chooses.
func ParsePort(s string) ([]Port, error) {
	bad := func(why string) error {
		return errdefs.Invalid(fmt.Errorf("invalid port %q: %s (want [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp])", s, why))
	}
	spec, proto, _ := strings.Cut(s, "/")
	proto = strings.ToLower(proto)
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return nil, bad("the protocol is tcp or udp")
	}
	var ip, host, ctr string
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 1:
		ctr = parts[0]
	case 2:
		host, ctr = parts[0], parts[1]
	case 3:
		ip, host, ctr = parts[0], parts[1], parts[2]
		if net.ParseIP(ip).To4() == nil {
			return nil, bad("the host address is not an IPv4 address")
		}
	default:
		return nil, bad("too many colons")
	}
	cLo, cHi, err := portRange(ctr)
	if err != nil {
		return nil, bad(err.Error())
	}
	hLo, hHi := 0, 0
	if host != "" {
		if hLo, hHi, err = portRange(host); err != nil {
			return nil, bad(err.Error())
		}
		if hHi-hLo != cHi-cLo {
			return nil, bad("the host and container ranges differ in length")
		}
	}
	var out []Port
	for i := 0; i <= cHi-cLo; i++ {
		p := Port{HostIP: ip, ContainerPort: cLo + i, Protocol: proto}
		if hLo != 0 {
			p.HostPort = hLo + i
		}
		out = append(out, p)
	}
	return out, nil
}

// portRange parses "N" or "N-M".
func portRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = port(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = port(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %s ends before it starts", s)
		}
	}
	return lo, hi, nil
}

func port(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1 to 65535)", s)
	}
	return n, nil
}

// String writes p as docker port does: 0.0.0.0:8080->80/tcp.
func (p Port) String() string {
	ip := p.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, p.Protocol)
}
