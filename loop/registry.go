package loop

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// registry is the node-wide index: users to their sessions, connection ids to
// connections, and room counts. It is sharded so connects on different loops rarely
// contend. It changes on connect, disconnect and room changes, never per message.
type registry struct {
	// presence is Config.OnPresence (nil: none). It is called with the lock that
	// decided the change still held, so the events for one user (or room) reach it
	// in the order the changes happened, whichever loops or API calls made them.
	presence func(kind PresenceKind, name string, present bool)

	seed   maphash.Seed
	users  [regShards]userShard
	ids    [regShards]idShard
	rooms  [regShards]roomShard
	nUsers atomic.Int64
	nRooms atomic.Int64
}

const regShards = 64

type userShard struct {
	mu    sync.Mutex
	users map[string]*session
}

// idShard finds connections by number (kicks, connection targets). Numbers are
// sequential, so num % regShards spreads them evenly.
type idShard struct {
	mu    sync.Mutex
	conns map[uint64]*Conn
}

// session is one user's presence on this node.
type session struct {
	conns []*Conn             // oldest first
	rooms map[string]struct{} // rooms joined through the API; new connections inherit them
}

type roomShard struct {
	mu    sync.Mutex
	rooms map[string]*roomCount
}

type roomCount struct {
	conns   int
	members map[string]int // user -> connections of that user in the room
}

func newRegistry(presence func(PresenceKind, string, bool)) *registry {
	r := &registry{seed: maphash.MakeSeed(), presence: presence}
	for i := range r.users {
		r.users[i].users = make(map[string]*session)
		r.ids[i].conns = make(map[uint64]*Conn)
		r.rooms[i].rooms = make(map[string]*roomCount)
	}
	return r
}

func (r *registry) userShard(user string) *userShard {
	return &r.users[maphash.String(r.seed, user)%regShards]
}

func (r *registry) roomShard(room string) *roomShard {
	return &r.rooms[maphash.String(r.seed, room)%regShards]
}

// add publishes c under its user with its initial rooms. It returns the connection to
// evict (the user's oldest, when the user is at max) and c's rooms.
func (r *registry) add(c *Conn, tokenRooms []string, maxPerUser int) (evict *Conn, rooms []string) {
	if c.kind == KindPusher {
		return nil, r.addAnonymous(c, tokenRooms)
	}
	us := r.userShard(c.user)
	us.mu.Lock()
	s := us.users[c.user]
	if s == nil {
		s = &session{}
		us.users[c.user] = s
		r.nUsers.Add(1)
		if r.presence != nil {
			r.presence(PresenceUser, c.user, true)
		}
	}
	live := 0
	for _, o := range s.conns {
		if !o.evicted {
			live++
		}
	}
	if live >= maxPerUser {
		for _, o := range s.conns {
			if !o.evicted {
				evict = o
				evict.evicted = true
				break
			}
		}
	}
	s.conns = append(s.conns, c)
	ids := &r.ids[c.num%regShards]
	ids.mu.Lock()
	ids.conns[c.num] = c
	ids.mu.Unlock()
	rooms = make([]string, 0, len(tokenRooms)+len(s.rooms))
	for _, room := range tokenRooms {
		if !slices.Contains(rooms, room) {
			rooms = append(rooms, room)
		}
	}
	for room := range s.rooms {
		if !slices.Contains(rooms, room) {
			rooms = append(rooms, room)
		}
	}
	c.rooms = rooms
	for _, room := range rooms {
		r.roomAdd(room, c.user)
	}
	us.mu.Unlock()
	return evict, slices.Clone(rooms)
}

// remove unpublishes c.
func (r *registry) remove(c *Conn) {
	if c.kind == KindPusher {
		r.removeAnonymous(c)
		return
	}
	us := r.userShard(c.user)
	us.mu.Lock()
	defer us.mu.Unlock()
	s := us.users[c.user]
	i := -1
	if s != nil {
		i = slices.Index(s.conns, c)
	}
	if i < 0 {
		return
	}
	s.conns = slices.Delete(s.conns, i, i+1)
	ids := &r.ids[c.num%regShards]
	ids.mu.Lock()
	delete(ids.conns, c.num)
	ids.mu.Unlock()
	for _, room := range c.rooms {
		r.roomRemove(room, c.user)
	}
	c.rooms = nil
	if len(s.conns) == 0 {
		delete(us.users, c.user)
		r.nUsers.Add(-1)
		if r.presence != nil {
			r.presence(PresenceUser, c.user, false)
		}
	}
}

// lockOf is the mutex that guards c.rooms: its user's shard, or for a connection
// without a user (KindPusher) the shard its number picks, so Pusher connections'
// subscriptions do not all contend on the shard of "".
func (r *registry) lockOf(c *Conn) *userShard {
	if c.kind == KindPusher {
		return &r.users[c.num%regShards]
	}
	return r.userShard(c.user)
}

// addAnonymous publishes a connection that has no user (KindPusher): by number
// only, with no session, so it is never evicted by MaxConnsPerUser, never reported
// as a user's presence and never reached by user targets. Its rooms count it under
// the member "" (the Pusher layer keeps presence members itself).
func (r *registry) addAnonymous(c *Conn, rooms []string) []string {
	us := r.lockOf(c)
	us.mu.Lock()
	defer us.mu.Unlock()
	ids := &r.ids[c.num%regShards]
	ids.mu.Lock()
	ids.conns[c.num] = c
	ids.mu.Unlock()
	c.rooms = slices.Compact(slices.Sorted(slices.Values(rooms)))
	for _, room := range c.rooms {
		r.roomAdd(room, c.user)
	}
	return slices.Clone(c.rooms)
}

// removeAnonymous is addAnonymous's inverse.
func (r *registry) removeAnonymous(c *Conn) {
	us := r.lockOf(c)
	us.mu.Lock()
	defer us.mu.Unlock()
	ids := &r.ids[c.num%regShards]
	ids.mu.Lock()
	_, ok := ids.conns[c.num]
	delete(ids.conns, c.num)
	ids.mu.Unlock()
	if !ok {
		return
	}
	for _, room := range c.rooms {
		r.roomRemove(room, c.user)
	}
	c.rooms = nil
}

// roomAdd counts one more connection of user in room. Called with the user's shard
// lock held (lock order: user shard, then room shard, then whatever presence takes).
func (r *registry) roomAdd(room, user string) {
	rs := r.roomShard(room)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rc := rs.rooms[room]
	if rc == nil {
		rc = &roomCount{members: make(map[string]int)}
		rs.rooms[room] = rc
		r.nRooms.Add(1)
		if r.presence != nil {
			r.presence(PresenceRoom, room, true)
		}
	}
	rc.conns++
	rc.members[user]++
}

// roomRemove is roomAdd's inverse.
func (r *registry) roomRemove(room, user string) {
	rs := r.roomShard(room)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rc := rs.rooms[room]
	if rc == nil {
		panic("BUG: loop: room count missing for " + room)
	}
	rc.conns--
	if rc.members[user]--; rc.members[user] <= 0 {
		delete(rc.members, user)
	}
	if rc.conns == 0 {
		delete(rs.rooms, room)
		r.nRooms.Add(-1)
		if r.presence != nil {
			r.presence(PresenceRoom, room, false)
		}
	}
}

// conn returns the connection with number num, if it is here.
func (r *registry) conn(num uint64) *Conn {
	ids := &r.ids[num%regShards]
	ids.mu.Lock()
	c := ids.conns[num]
	ids.mu.Unlock()
	return c
}

// userConns appends the user's connections to dst.
func (r *registry) userConns(dst []*Conn, user string) []*Conn {
	us := r.userShard(user)
	us.mu.Lock()
	if s := us.users[user]; s != nil {
		dst = append(dst, s.conns...)
	}
	us.mu.Unlock()
	return dst
}

// ConnInfo describes one connection for presence answers.
type ConnInfo struct {
	ID, User, Remote, Device string
	Since                    int64 // unix nanoseconds
	Rooms                    []string
	Meta                     string // the connect hook's metadata, a JSON object's text; "" when none
}

func (r *registry) userInfo(user string) []ConnInfo {
	us := r.userShard(user)
	us.mu.Lock()
	defer us.mu.Unlock()
	s := us.users[user]
	if s == nil {
		return nil
	}
	out := make([]ConnInfo, 0, len(s.conns))
	for _, c := range s.conns {
		remote := ""
		if c.remote.IsValid() {
			remote = c.remote.String()
		}
		out = append(out, ConnInfo{ID: c.ID(), User: c.user, Remote: remote, Device: c.device,
			Since: c.since, Rooms: slices.Clone(c.rooms), Meta: c.meta})
	}
	return out
}

// RoomInfo counts a room's members and connections on this node.
type RoomInfo struct {
	Members, Connections int
	Users                []string // only from RoomMembers
}

func (r *registry) roomInfo(room string, withUsers bool) RoomInfo {
	rs := r.roomShard(room)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rc := rs.rooms[room]
	if rc == nil {
		return RoomInfo{}
	}
	ri := RoomInfo{Members: len(rc.members), Connections: rc.conns}
	if withUsers {
		ri.Users = make([]string, 0, len(rc.members))
		for u := range rc.members {
			ri.Users = append(ri.Users, u)
		}
	}
	return ri
}

// join adds room to each user's session and connections. It returns the connections
// that newly joined (for the loops' indexes) and the users not connected here.
func (r *registry) join(room string, users []string) (joined []*Conn, missing []string) {
	for _, u := range users {
		us := r.userShard(u)
		us.mu.Lock()
		s := us.users[u]
		if s == nil {
			us.mu.Unlock()
			missing = append(missing, u)
			continue
		}
		if s.rooms == nil {
			s.rooms = make(map[string]struct{})
		}
		s.rooms[room] = struct{}{}
		for _, c := range s.conns {
			if slices.Contains(c.rooms, room) {
				continue
			}
			c.rooms = append(c.rooms, room)
			r.roomAdd(room, u)
			joined = append(joined, c)
		}
		us.mu.Unlock()
	}
	return joined, missing
}

// leave is join's inverse.
func (r *registry) leave(room string, users []string) (left []*Conn, missing []string) {
	for _, u := range users {
		us := r.userShard(u)
		us.mu.Lock()
		s := us.users[u]
		if s == nil {
			us.mu.Unlock()
			missing = append(missing, u)
			continue
		}
		delete(s.rooms, room)
		for _, c := range s.conns {
			i := slices.Index(c.rooms, room)
			if i < 0 {
				continue
			}
			c.rooms = slices.Delete(c.rooms, i, i+1)
			r.roomRemove(room, u)
			left = append(left, c)
		}
		us.mu.Unlock()
	}
	return left, missing
}

// online reports which of users have no connection here.
func (r *registry) offline(users []string) []string {
	var out []string
	for _, u := range users {
		us := r.userShard(u)
		us.mu.Lock()
		_, ok := us.users[u]
		us.mu.Unlock()
		if !ok {
			out = append(out, u)
		}
	}
	return out
}

// snapshotUsers appends every user with a connection here (for cluster full sync).
func (r *registry) snapshotUsers(dst []string) []string {
	for i := range r.users {
		us := &r.users[i]
		us.mu.Lock()
		for u := range us.users {
			dst = append(dst, u)
		}
		us.mu.Unlock()
	}
	return dst
}

func (r *registry) snapshotRooms(dst []string) []string {
	for i := range r.rooms {
		rs := &r.rooms[i]
		rs.mu.Lock()
		for room := range rs.rooms {
			dst = append(dst, room)
		}
		rs.mu.Unlock()
	}
	return dst
}
