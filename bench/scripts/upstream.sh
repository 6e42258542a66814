#!/bin/sh
# upstream.sh: `longlink bench upstream` RUNS times (default 3) against a fresh
# gateway each run, with the bundled back-end, then the floor (the same loop
# straight to the back-end, as long); prints each run's summary lines.
# Usage: bench/scripts/upstream.sh [BINARY] [CONNS] [DURATION]
# GATEWAY=BINARY2 runs that binary's serve instead (comparing two builds with one
# bench); FLOOR=before|after|off is passed to --floor.
set -eu
BIN=${1:-./longlink}
GATEWAY=${GATEWAY:-$BIN}
FLOOR=${FLOOR:-after}
CONNS=${2:-64}
DUR=${3:-20s}
RUNS=${RUNS:-3}
SECRET=upstream-bench-secret-0123456789
i=1
while [ "$i" -le "$RUNS" ]; do
	"$GATEWAY" serve --client-addr 127.0.0.1:18080 --api-addr 127.0.0.1:18081 --token-secret "$SECRET" \
		--api-key k --demo=false --log-level warn --client-rate -1 \
		--business bench=http://127.0.0.1:19000/,inflight=1024,pool=64 >/tmp/upstream-gw.log 2>&1 &
	GW=$!
	sleep 1
	echo "== run $i: $CONNS connections, $DUR, gateway $GATEWAY, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	"$BIN" bench upstream --target 127.0.0.1:18080 --api 127.0.0.1:18081 --token-secret "$SECRET" \
		--backend-addr 127.0.0.1:19000 --conns "$CONNS" --duration "$DUR" --floor "$FLOOR" |
		grep -E "requests|round trip|server CPU|bench CPU|host CPU|floor|gateway / floor"
	kill "$GW"; wait "$GW" 2>/dev/null || true
	i=$((i + 1))
done
