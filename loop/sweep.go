package loop

import "longlink/wsproto"

// sweepRounds is how many ticks one full pass over a loop's connections takes: each
// tick checks 1/sweepRounds of them, so a pass costs the same however many there are,
// and timeouts fire within sweepRounds*clockTick (1 s) of their due time.
const sweepRounds = 10

// pingShare is how many times its even share of pings a sweep tick may send: a
// loop's n connections need n pings per PingInterval, n/pingTicks a tick. Clients
// that connected together fall silent together, and without a cap one tick would
// ping them all back to back (a 19,000-connection reconnect: ~5 ms of writes per
// loop per tick, which every push behind them waits out). A due ping over the cap
// waits for the connection's next visit (sweepRounds ticks); with the cap at 4× the
// share a whole loop is pinged within PingInterval/4, far inside IdleTimeout, and
// since each ping moves its connection's deadline, the next round stays spread.
const pingShare = 4

// minPingsPerTick keeps small loops from waiting on the cap at all.
const minPingsPerTick = 32

// sweep enforces handshake, idle, close and token-expiry deadlines and sends pings
// for a slice of the loop's connections. It replaces a timer per connection.
func (sh *shard) sweep() {
	s := sh.srv
	n := len(sh.conns)
	if n == 0 {
		return
	}
	now := s.clock.ticks()
	count := (n + sweepRounds - 1) / sweepRounds
	pings := max(minPingsPerTick, pingShare*n/max(int(s.pingTicks), 1))
	for i := 0; i < count && len(sh.conns) > 0; i++ {
		if sh.sweepPos >= len(sh.conns) {
			sh.sweepPos = 0
		}
		c := sh.conns[sh.sweepPos]
		sh.sweepPos++
		switch c.state {
		case stateHandshake, stateAdmitting:
			if now >= c.deadline {
				s.m.handshakeFailure("timeout")
				s.closeNow(c) // removes c; the next one moved into its slot
				sh.sweepPos--
			}
		case stateClosing:
			if now >= c.deadline {
				s.closeNow(c)
				sh.sweepPos--
			}
		case stateOpen:
			if c.w != nil {
				if now >= c.deadline {
					s.m.handshakeFailure("timeout")
					s.closeNow(c)
					sh.sweepPos--
				}
				continue
			}
			if c.kind == KindPusher {
				if sh.sweepPusher(c, now) {
					sh.sweepPos-- // closed: the next one moved into its slot
				}
				continue
			}
			switch {
			case c.expires != 0 && now >= c.expires:
				sh.startClose(c, CloseTokenExpired, "token expired")
			case now-c.lastSeen >= s.idleTicks:
				s.sendClose(c, wsproto.CloseGoingAway, "idle timeout")
				s.closeNow(c)
				sh.sweepPos--
			case now >= c.deadline && now-c.lastSeen >= s.pingTicks && pings > 0:
				// Ping only a connection that has been silent a whole interval, and
				// move the deadline only when a ping goes out, so a client busy just
				// before the deadline is pinged as soon as it falls silent.
				pings--
				c.deadline = now + s.pingTicks
				s.writeOwn(c, wsproto.PingFrame)
			}
		}
	}
}
