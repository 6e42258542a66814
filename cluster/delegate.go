package cluster

import (
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

const (
	stateAlive   = "alive"
	stateSuspect = "suspect"
	stateDead    = "dead"
	stateLeft    = "left"

	// forgetAfter is how long dead/left members stay listed (memberlist's
	// default GossipToTheDeadTime).
	forgetAfter = 30 * time.Second
)

// memberInfo is our copy of one memberlist node, updated only from event
// callbacks (memberlist holds its node lock there, so copying is race free).
type memberInfo struct {
	name       string
	gossipAddr string
	meta       nodeMeta
	state      string // alive, dead or left; suspect is derived (see suspect)
	since      time.Time
	lastAck    time.Time // last direct probe ack (PingDelegate)
	leaving    bool      // it announced a graceful leave on its link
}

// delegate implements memberlist's Delegate, EventDelegate and PingDelegate.
// Its methods are called by memberlist goroutines, event methods with
// memberlist's node lock held: they must not block nor call memberlist.
type delegate Cluster

// NodeMeta encodes this node's advertised meta.
func (d *delegate) NodeMeta(limit int) []byte {
	c := (*Cluster)(d)
	var m nodeMeta
	if c.cfg.Meta != nil {
		m.NodeMeta = c.cfg.Meta()
	}
	m.ForwardAddr = c.fwdAdvertise.Load().(string)
	return appendMeta(nil, m, limit)
}

// NotifyMsg is unused: messages travel on the forwarding links.
func (d *delegate) NotifyMsg([]byte) {}

// GetBroadcasts is unused: route deltas travel on the forwarding links.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState carries nothing: route tables are synced per link (routes.go).
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState: see LocalState.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { (*Cluster)(d).upsertMember(n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { (*Cluster)(d).upsertMember(n) }

// NotifyLeave cannot tell left from dead: memberlist keeps the state in its
// private nodeState (Node.State is never set). A leaving longlink node says so
// on its forwarding links first (kindLeaving), see removeMember.
func (d *delegate) NotifyLeave(n *memberlist.Node) { (*Cluster)(d).removeMember(n.Name) }

func (d *delegate) AckPayload() []byte { return nil }

func (d *delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	c := (*Cluster)(d)
	now := time.Now()
	c.memMu.Lock()
	if mi := c.members[other.Name]; mi != nil {
		mi.lastAck = now
	}
	c.memMu.Unlock()
}

func (c *Cluster) upsertMember(n *memberlist.Node) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		c.log.Warn("cluster: ignoring malformed meta", "node", n.Name, "err", err)
	}
	now := time.Now()
	c.memMu.Lock()
	defer c.memMu.Unlock()
	mi := c.members[n.Name]
	if mi == nil || mi.state != stateAlive {
		mi = &memberInfo{name: n.Name, state: stateAlive, since: now}
		c.members[n.Name] = mi
	}
	mi.gossipAddr = n.Address()
	mi.meta = meta
	if n.Name == c.cfg.NodeName || c.closing {
		return
	}
	if p := c.peers[n.Name]; p != nil {
		if meta.ForwardAddr != "" {
			p.setAddr(meta.ForwardAddr)
		}
	} else if meta.ForwardAddr != "" {
		p := newPeer(c, n.Name, meta.ForwardAddr)
		c.peers[n.Name] = p
		c.wg.Add(1)
		go p.run()
	}
	c.rebuildAliveLocked()
}

// markLeaving records a peer's announcement that it is leaving.
func (c *Cluster) markLeaving(name string) {
	c.memMu.Lock()
	if mi := c.members[name]; mi != nil && mi.state == stateAlive {
		mi.leaving = true
	}
	c.memMu.Unlock()
}

func (c *Cluster) removeMember(name string) {
	if name == c.cfg.NodeName {
		return
	}
	state := stateDead
	c.memMu.Lock()
	if mi := c.members[name]; mi != nil {
		if mi.leaving {
			state = stateLeft
		}
		mi.state, mi.since = state, time.Now()
	}
	p := c.peers[name]
	delete(c.peers, name)
	c.rebuildAliveLocked()
	closing := c.closing
	if !closing && c.cfg.OnNodeLeft != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.cfg.OnNodeLeft(name)
		}()
	}
	c.memMu.Unlock()
	if p != nil {
		p.close()
	}
	c.remote.drop(name)
	c.closeInboundFrom(name)
	c.log.Info("cluster: node "+state, "node", name)
}

// rebuildAliveLocked publishes the sorted names of peers we have a link for.
func (c *Cluster) rebuildAliveLocked() {
	names := make([]string, 0, len(c.peers))
	for name := range c.peers {
		names = append(names, name)
	}
	slices.Sort(names)
	c.alive.Store(&names)
	select {
	case c.membersChanged <- struct{}{}:
	default:
	}
}

// pruneMembers forgets dead/left members after forgetAfter.
func (c *Cluster) pruneMembers(now time.Time) {
	c.memMu.Lock()
	for name, mi := range c.members {
		if mi.state != stateAlive && now.Sub(mi.since) > forgetAfter {
			delete(c.members, name)
		}
	}
	c.memMu.Unlock()
}

// stateOfLocked derives the reported state. memberlist has no race-free
// accessor for a node's suspect state, so an alive peer that has not acked a
// direct probe for about two rounds of probing is reported as suspect.
func (c *Cluster) stateOfLocked(mi *memberInfo, now time.Time) string {
	if mi.state != stateAlive || mi.name == c.cfg.NodeName {
		return mi.state
	}
	window := 2 * time.Duration(len(c.members)+2) * c.cfg.Probe
	last := mi.lastAck
	if last.Before(mi.since) {
		last = mi.since
	}
	if now.Sub(last) > window {
		return stateSuspect
	}
	return stateAlive
}

func (c *Cluster) countMembers(state string) int {
	now := time.Now()
	c.memMu.RLock()
	defer c.memMu.RUnlock()
	n := 0
	for _, mi := range c.members {
		if c.stateOfLocked(mi, now) == state {
			n++
		}
	}
	return n
}
