package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Requests between nodes.
//
// A request is a kindRequest frame {id uvarint, body} on the asker's outbound link
// to the node it asks. Links are one-way, so the answer travels on the answering
// node's own outbound link back to the asker, as a kindResponse frame {id, body}.
// The asker keeps a waiter per id; an answer is taken only from the node the id was
// sent to, and only while someone waits for it: answers to unknown, expired or
// cancelled ids, or from another node, are dropped.
//
// Both frames go through the peer's bounded queue like data (counted as forwarded
// messages and failures the same way) and are read by the link's reader, which hands
// a request to one of MaxAnswering goroutines and never runs OnRequest itself, so a
// slow answer does not hold up the pushes behind it on the link.

var errRequestFrame = errors.New("cluster: malformed request or response frame")

// requests is the state of the request facility of one Cluster.
type requests struct {
	next      atomic.Uint64
	answering chan struct{} // a slot per OnRequest running; capacity MaxAnswering

	mu      sync.Mutex
	waiting map[uint64]waiter // request id -> who waits for its answer
}

// waiter is one id's entry: the node asked and where its answer goes. ch has room
// for an answer to every id registered with it, and an id is taken out of the map
// before its answer is sent, so delivering an answer never blocks.
type waiter struct {
	node string
	ch   chan<- answer
}

type answer struct {
	node string
	body []byte
}

func newRequests(maxAnswering int) *requests {
	return &requests{answering: make(chan struct{}, maxAnswering), waiting: map[uint64]waiter{}}
}

// Request sends body to node and waits for its answer: until the answer arrives,
// ctx ends (ctx.Err()), RequestTimeout passes (ErrTimeout) or the cluster shuts
// down (ErrClosed). A request that cannot be queued fails at once with Send's
// errors (ErrUnknownNode, ErrQueueFull, ErrTooLarge). Safe for concurrent use.
func (c *Cluster) Request(ctx context.Context, node string, body []byte) ([]byte, error) {
	if c == nil {
		return nil, ErrUnknownNode
	}
	ch := make(chan answer, 1)
	id, err := c.sendRequest(node, body, ch)
	if err != nil {
		return nil, err
	}
	defer c.forget(id)
	t := time.NewTimer(c.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case a := <-ch:
		return a.body, nil
	case <-t.C:
		return nil, ErrTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.stop:
		return nil, ErrClosed
	}
}

// Ask sends body to every node in nodes at once and collects their answers until
// all have answered, ctx ends, RequestTimeout passes or the cluster shuts down.
// answers maps a node to its answer; missing lists, in the order given, the nodes
// that did not answer (including those the request could not be queued for, which
// are not waited for). A node listed twice is asked once. A nil Cluster reaches
// no one: every node is missing.
func (c *Cluster) Ask(ctx context.Context, nodes []string, body []byte) (answers map[string][]byte, missing []string) {
	answers = make(map[string][]byte, len(nodes))
	if len(nodes) == 0 {
		return answers, nil
	}
	var ids []uint64
	ch := make(chan answer, len(nodes))
	for i, node := range nodes {
		if c == nil || slices.Contains(nodes[:i], node) {
			continue
		}
		if id, err := c.sendRequest(node, body, ch); err == nil {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		t := time.NewTimer(c.cfg.RequestTimeout)
	wait:
		for len(answers) < len(ids) {
			select {
			case a := <-ch:
				answers[a.node] = a.body
			case <-t.C:
				break wait
			case <-ctx.Done():
				break wait
			case <-c.stop:
				break wait
			}
		}
		t.Stop()
		c.req.mu.Lock()
		for _, id := range ids {
			delete(c.req.waiting, id)
		}
		c.req.mu.Unlock()
	}
	for i, node := range nodes {
		if _, ok := answers[node]; !ok && !slices.Contains(nodes[:i], node) {
			missing = append(missing, node)
		}
	}
	return answers, missing
}

// sendRequest registers a waiter (before sending: the answer may come back before
// Send would return) and queues the request. On error nothing stays registered.
func (c *Cluster) sendRequest(node string, body []byte, ch chan<- answer) (uint64, error) {
	id := c.req.next.Add(1)
	c.req.mu.Lock()
	c.req.waiting[id] = waiter{node: node, ch: ch}
	c.req.mu.Unlock()
	var idb [binary.MaxVarintLen64]byte
	if err := c.send(node, kindRequest, idb[:binary.PutUvarint(idb[:], id)], body); err != nil {
		c.forget(id)
		return 0, err
	}
	return id, nil
}

func (c *Cluster) forget(id uint64) {
	c.req.mu.Lock()
	delete(c.req.waiting, id)
	c.req.mu.Unlock()
}

// deliverAnswer hands an answer from node from to whoever waits for id. It runs on
// the link's reader; body is the reader's buffer, hence the copy.
func (c *Cluster) deliverAnswer(from string, id uint64, body []byte) {
	c.req.mu.Lock()
	w, ok := c.req.waiting[id]
	if ok && w.node == from {
		delete(c.req.waiting, id)
	} else {
		ok = false
	}
	c.req.mu.Unlock()
	if ok {
		w.ch <- answer{node: from, body: slices.Clone(body)}
	}
}

// startAnswer runs OnRequest for a peer's request on a goroutine of its own, at
// most MaxAnswering at once. Over that the request is dropped and counted: more
// requests in flight than a node should ever see mean answering more would only
// queue them behind each other. It runs on the link's reader (a goroutine counted
// in c.wg, so the Add below never races shutdown's Wait).
func (c *Cluster) startAnswer(from string, id uint64, body []byte) {
	if c.cfg.OnRequest == nil {
		c.m.queryDrops.Inc()
		return
	}
	select {
	case c.req.answering <- struct{}{}:
	default:
		c.m.queryDrops.Inc()
		return
	}
	body = slices.Clone(body)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.req.answering }()
		out := c.cfg.OnRequest(from, body)
		if out == nil {
			return
		}
		var idb [binary.MaxVarintLen64]byte
		// Fails (and is counted) when from is gone, its queue is full or the
		// answer is over the frame limit; the asker then times out.
		_ = c.send(from, kindResponse, idb[:binary.PutUvarint(idb[:], id)], out)
	}()
}
