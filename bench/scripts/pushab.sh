#!/bin/bash
# A/B: server CPU per push and latency, OLD build vs NEW build, the NEW build's bench.
# Usage: OLD=path/to/old NEW=path/to/new pushab.sh [extra bench flags]
for r in ${RUNS:-1 2 3}; do
  for b in s3 new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    S=0123456789abcdef0123 K=key-0123456789
    $bin serve --client-addr 127.0.0.1:28080 --api-addr 127.0.0.1:28081 --token-secret $S --api-key $K --demo=false --log-level error > /dev/null 2>&1 &
    pid=$!
    for i in $(seq 50); do curl -s 127.0.0.1:28081/healthz >/dev/null && break; sleep 0.1; done
    $NEW bench push --target 127.0.0.1:28080 --api 127.0.0.1:28081 --token-secret $S --api-key $K \
      --users 1900 --conns-per-user 10 --callers 64 --push-rate 5000 --duration 15s --workers 2 "${@}" --json ${OUT:-/tmp}/pab-$b-$r.json > ${OUT:-/tmp}/pab-$b-$r.txt 2>&1
    kill $pid; wait $pid 2>/dev/null
    grep -i "cpu per push\|server cpu\|p50\|p99" ${OUT:-/tmp}/pab-$b-$r.txt | head -4 | sed "s/^/$b $r: /"
  done
done
