package hub

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Terminating a Pusher user's connections (POST /apps/{id}/users/{user}/
// terminate_connections). A Pusher connection has no longlink user, so neither the
// registry's sessions nor the user routes know it: every alive node is asked, and
// each closes what its Config.PusherTerminate finds among its own connections.

// opPusherTerminate: arg pusherTerminateBody -> int, the connections closed there.
const opPusherTerminate byte = 'T'

type pusherTerminateBody struct {
	App  string `json:"app"`
	User string `json:"user"`
}

// PusherTerminate closes every connection of app signed in as user, on every node,
// and returns how many it closed. It fails (503) when a node did not answer and
// none was closed; a node that did not answer may still hold some, which the
// error names.
func (h *Hub) PusherTerminate(app, user string) (int, error) {
	n := h.localTerminate(app, user)
	peers := slices.DeleteFunc(slices.Clone(h.remote.AliveNodes()), func(p string) bool { return p == h.cfg.NodeName })
	body, _ := json.Marshal(pusherTerminateBody{App: app, User: user})
	answers, missing := h.ask(peers, opPusherTerminate, body)
	for _, b := range answers {
		var k int
		if json.Unmarshal(b, &k) == nil {
			n += k
		}
	}
	if len(missing) > 0 {
		return n, &statusError{503, fmt.Sprintf("nodes %s did not answer: their connections of user %q may still be open", strings.Join(missing, ", "), user)}
	}
	return n, nil
}

func (h *Hub) localTerminate(app, user string) int {
	if h.cfg.PusherTerminate == nil {
		return 0
	}
	return h.cfg.PusherTerminate(app, user)
}

func (h *Hub) onPusherTerminate(arg []byte) []byte {
	var b pusherTerminateBody
	if json.Unmarshal(arg, &b) != nil {
		return nil
	}
	out, _ := json.Marshal(h.localTerminate(b.App, b.User))
	return out
}
