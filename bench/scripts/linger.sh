#!/bin/bash
# linger.sh: a busy room (every connection in it) receiving --push-rate messages a
# second, with --room-linger 0, 5ms and 20ms, a fresh node each run; prints the
# server CPU per delivered message and the latency rows.
# Usage: BIN=./longlink [CONNS=19000] [RATE=200] [DUR=10s] [RUNS="1"] bench/scripts/linger.sh
BIN=${BIN:-./longlink}
S=0123456789abcdef0123 K=key-0123456789
for r in ${RUNS:-1}; do
  for l in 0 5ms 20ms; do
    $BIN serve --client-addr 127.0.0.1:28480 --api-addr 127.0.0.1:28481 --token-secret $S --api-key $K \
      --demo=false --log-level error --room-linger $l > /dev/null 2>&1 &
    pid=$!
    for i in $(seq 50); do curl -s 127.0.0.1:28481/healthz >/dev/null && break; sleep 0.1; done
    $BIN bench push --target 127.0.0.1:28480 --api 127.0.0.1:28481 --token-secret $S --api-key $K \
      --users ${CONNS:-19000} --conns-per-user 1 --room busy --callers 64 --push-rate ${RATE:-200} \
      --duration ${DUR:-10s} --workers 2 --json ${OUT:-/tmp}/linger-$l-$r.json > ${OUT:-/tmp}/linger-$l-$r.txt 2>&1
    kill $pid; wait $pid 2>/dev/null
    grep -E "^(pushes|deliveries|end-to-end|server CPU   +[0-9])" ${OUT:-/tmp}/linger-$l-$r.txt | sed "s/^/linger=$l run $r: /"
  done
done
