// Command udpecho echoes every UDP datagram it gets on the port its argument names. The
// network tests put it in an image: Debian's busybox has no UDP server.
package main

import (
	"log"
	"net"
	"os"
)

func main() {
	c, err := net.ListenPacket("udp4", ":"+os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 65536)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		c.WriteTo(buf[:n], addr)
	}
}
