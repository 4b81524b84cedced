// Package network gives containers their networks: bridge networks through CNI (libcni
// driving Debian's containernetworking-plugins: bridge, host-local, portmap, firewall,
// loopback), a network namespace per container made by the engine and handed to the
// runtime, published ports, and the names containers on a network know each other by
// (a generated /etc/hosts).
//
// Networks are records in the engine's database; their CNI configuration is made from
// the record each time, so a network is one thing to keep, not two. CNI's own state
// (host-local's leases, libcni's cache of what each ADD gave) lives under the data root,
// and is what DEL reads back after a daemon restart or a crash.
package network
