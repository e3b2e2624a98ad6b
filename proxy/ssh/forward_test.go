package ssh_test

import (
	"errors"
	"net"
	"strconv"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// TestForwardHostSpellings: a rule naming a forward's host holds for every
// spelling of that host the target's resolver reads as the same address.
func TestForwardHostSpellings(t *testing.T) {
	e := newEnv(t, envOptions{policy: `
default: allow
rules:
  - name: not-the-host-itself
    when: ssh.request == "direct-tcpip" && ssh.forward.host in ["127.0.0.2", "localhost"]
    action: deny
`})
	c := e.dial(t)
	_, portText, _ := net.SplitHostPort(e.sshd.Addr())
	port, _ := strconv.Atoi(portText)
	for _, host := range []string{"127.0.0.2", "127.2", "2130706434", "0x7f000002", "0177.0.0.2", "127.0.0.2.", "::ffff:127.0.0.2", "LOCALHOST", "localhost."} {
		ch, reqs, err := c.OpenChannel("direct-tcpip", gossh.Marshal(struct {
			Host       string
			Port       uint32
			OriginHost string
			OriginPort uint32
		}{host, uint32(port), "127.0.0.1", 1234}))
		var open *gossh.OpenChannelError
		if !errors.As(err, &open) || open.Reason != gossh.Prohibited {
			t.Errorf("direct-tcpip to %s:%d: %v, want it refused by policy", host, port, err)
		}
		if err == nil {
			go gossh.DiscardRequests(reqs)
			ch.Close()
		}
	}
}
