package loop

import (
	"context"
	"fmt"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// TestRoomLinger: with RoomLinger, pushes to one room held on a loop leave together,
// in order, to every member; a job that touches the room (a push naming it with a
// user, a join) first releases what is held, so each stream's order stays; and
// without RoomLinger nothing is held.
func TestRoomLinger(t *testing.T) {
	for _, linger := range []time.Duration{0, 80 * time.Millisecond} {
		t.Run(fmt.Sprint("linger=", linger), func(t *testing.T) {
			s := startServer(t, func(c *Config) { c.RoomLinger = linger })
			const room = "busy"
			a, b := rawDial(t, s, "alice"), rawDial(t, s, "bob")
			if _, _, err := s.JoinRoom(context.Background(), room, []string{"alice", "bob"}); err != nil {
				t.Fatal(err)
			}
			// submit pushes data to the room, and to user alice too when withUser.
			submit := func(data string, withUser bool) {
				t.Helper()
				st := &Stamped{ID: "m-" + data, Data: []byte(data), Plain: PrepareFrame(false, []byte(data)),
					Keys: []Key{{Kind: KeyRoom, Name: room, Stream: "room:" + room}}}
				if withUser {
					st.Keys = append(st.Keys, Key{Kind: KeyUser, Name: "alice", Stream: "user:alice"})
				}
				if _, err := s.SubmitStamped(st, time.Now().UnixNano()); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 5; i++ {
				submit(fmt.Sprint("r", i), false)
			}
			// A push naming the room and a user: it must come after the five.
			submit("mixed", true)
			for _, c := range []*rawClient{a, b} {
				for i := 0; i < 5; i++ {
					if f := c.next(t); string(f.Payload) != fmt.Sprint("r", i) {
						t.Fatalf("got %q, want r%d", f.Payload, i)
					}
				}
				if f := c.next(t); string(f.Payload) != "mixed" {
					t.Fatalf("got %q, want mixed", f.Payload)
				}
			}
			m := testutil.Scrape(t, s.cfg.Metrics)
			batches, held := m["longlink_room_linger_batches_total"], m["longlink_room_linger_messages_total"]
			if linger == 0 && (batches != 0 || held != 0) {
				t.Fatalf("linger off held %v messages in %v batches", held, batches)
			}
			if linger > 0 && held != 5*float64(len(s.shardList())) && held < 5 {
				t.Fatalf("held %v messages in %v batches, want the 5 room pushes", held, batches)
			}
			// A lone push waits for the linger, then arrives.
			start := time.Now()
			submit("late", false)
			if f := a.next(t); string(f.Payload) != "late" {
				t.Fatalf("got %q", f.Payload)
			}
			if linger > 0 && time.Since(start) < linger/2 {
				t.Errorf("a lingered push arrived after %v, before the linger %v", time.Since(start), linger)
			}
		})
	}
}
