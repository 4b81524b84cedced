package network

import (
	"reflect"
	"testing"
)

func TestParsePort(t *testing.T) {
	for in, want := range map[string][]Port{
		"80":                  {{ContainerPort: 80, Protocol: "tcp"}},
		"8080:80":             {{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		"127.0.0.1:8080:80":   {{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		"127.0.0.1::80/udp":   {{HostIP: "127.0.0.1", ContainerPort: 80, Protocol: "udp"}},
		"9000-9001:90-91/UDP": {{HostPort: 9000, ContainerPort: 90, Protocol: "udp"}, {HostPort: 9001, ContainerPort: 91, Protocol: "udp"}},
		"53/udp":              {{ContainerPort: 53, Protocol: "udp"}},
	} {
		got, err := ParsePort(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParsePort(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "70000", "80/sctp", "x:80", "1:2:3:4", "8000-8002:80-81", "90-80", "localhost:80:80", "-1"} {
		if got, err := ParsePort(in); err == nil {
			t.Errorf("ParsePort(%q) = %+v; want an error", in, got)
		}
	}
	if s := (Port{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}).String(); s != "0.0.0.0:8080->80/tcp" {
		t.Errorf("String: %s", s)
	}
}
