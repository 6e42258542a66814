#!/bin/sh
# pusher.sh: `longlink bench pusher` RUNS times (default 3), a fresh node each run
# (--pusher-app, --pprof so bench can force a GC before each heap sample), the
# native comparison after the Pusher phase; prints each run's Pusher and native
# rows and the ratios, and keeps the reports in $OUT (default /tmp).
# Usage: bench/scripts/pusher.sh [BINARY] [bench pusher flags...]
#   bench/scripts/pusher.sh ./longlink --conns 10000 --channels 100 --push-rate 1000 --duration 30s
#   bench/scripts/pusher.sh ./longlink --conns 10000 --channels 1 --push-rate 10 --duration 30s
# NAME names the reports (default pusher); SERVE_FLAGS are added to serve.
set -eu
BIN=${1:-./longlink}
[ $# -gt 0 ] && shift
RUNS=${RUNS:-3}
OUT=${OUT:-/tmp}
NAME=${NAME:-pusher}
SECRET=pusher-bench-secret-0123456789
KEY=pusher-bench-key
APP=bench:bench-key:pusher-app-secret-0123456789
i=1
while [ "$i" -le "$RUNS" ]; do
	# shellcheck disable=SC2086
	"$BIN" serve --client-addr 127.0.0.1:28280 --api-addr 127.0.0.1:28281 --token-secret "$SECRET" \
		--api-key "$KEY" --demo=false --log-level warn --pprof --pusher-app "$APP" ${SERVE_FLAGS:-} \
		>"$OUT/$NAME-node-$i.log" 2>&1 &
	NODE=$!
	for _ in $(seq 50); do curl -s 127.0.0.1:28281/healthz >/dev/null 2>&1 && break; sleep 0.1; done
	echo "== run $i: load average $(cut -d' ' -f1-3 /proc/loadavg)"
	"$BIN" bench pusher --target 127.0.0.1:28280 --api 127.0.0.1:28281 --pusher-app "$APP" \
		--token-secret "$SECRET" --api-key "$KEY" --json "$OUT/$NAME-$i.json" "$@" >"$OUT/$NAME-$i.txt" 2>&1 || echo "(bench exited $?)"
	sed -n '/^== longlink bench/,$p' "$OUT/$NAME-$i.txt" | grep -E "^(host CPU|pusher|native)" | grep -vE "^(pusher|native) +(app|comparison)" || true
	kill "$NODE"; wait "$NODE" 2>/dev/null || true
	i=$((i + 1))
done
