package node

import (
	"fmt"

	"longlink/connhook"
	"longlink/loop"
)

// The connect hook (docs/api.md, "Connect hook"): with ConnectHook.URL set, every
// upgrade that passed the token check waits, unregistered, for the hook's decision
// (loop.Config.Admit); connhook makes the call off the loop and the decision comes
// back through the Admission.

// newConnectHook builds the hook when one is configured, checking that its timeout
// leaves the upgrade time to finish within the handshake timeout.
func newConnectHook(cfg *Config) (*connhook.Hook, error) {
	hc := cfg.ConnectHook
	if hc.URL == "" {
		return nil, nil
	}
	timeout := hc.Timeout
	if timeout <= 0 {
		timeout = connhook.Defaults().Timeout
	}
	handshake := cfg.Loop.HandshakeTimeout
	if handshake <= 0 {
		handshake = loop.Defaults().HandshakeTimeout
	}
	if timeout >= handshake {
		return nil, fmt.Errorf("node: ConnectHook.Timeout (--connect-hook-timeout %v) must be shorter than Loop.HandshakeTimeout (--handshake-timeout %v): a client would be dropped before the hook's answer counts", timeout, handshake)
	}
	hc.NodeName = cfg.NodeName
	return connhook.New(hc)
}

// admit is loop's Admit: it runs on the connection's loop and returns at once.
func (n *Node) admit(a *loop.Admission) {
	req := connhook.Request{Connection: a.ConnID, User: a.User, Token: a.Token, V2: a.V2, Remote: a.Remote, Header: a.Header}
	n.hook.Check(a.Context(), req, func(d connhook.Decision) {
		r := loop.AdmitResult{Rooms: d.Rooms, Meta: d.Meta}
		if d.Status != 0 {
			r.Err, r.RetryAfter = &loop.AuthError{Status: d.Status, Reason: d.Reason}, d.RetryAfter
		}
		a.Done(r)
	})
}
