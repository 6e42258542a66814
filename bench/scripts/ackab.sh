#!/bin/bash
# Acknowledged pushes: v2 without ack, with --ack, with --ack --wait 5s, alternating,
# a fresh node per run. Usage: BIN=path/to/longlink ackab.sh USERS CONNS_PER_USER [extra bench flags]
# (the docs/performance.md series: 1900 10, then 19000 1). RUNS="1 2 3" by default.
U=${1:-1900}; C=${2:-10}; shift 2
S=0123456789abcdef0123 K=key-0123456789
for r in ${RUNS:-1 2 3}; do
  for m in plain ack wait; do
    flags=(--protocol v2)
    [ $m = ack ] && flags+=(--ack)
    [ $m = wait ] && flags+=(--ack --wait 5s)
    $BIN serve --client-addr 127.0.0.1:28080 --api-addr 127.0.0.1:28081 --token-secret $S --api-key $K \
      --demo=false --log-level error ${SERVE_FLAGS} > /dev/null 2>&1 &
    pid=$!
    for i in $(seq 50); do curl -s 127.0.0.1:28081/healthz >/dev/null && break; sleep 0.1; done
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    f=${OUT:-/tmp}/ack-$U-$C-$m-$r
    $BIN bench push --target 127.0.0.1:28080 --api 127.0.0.1:28081 --token-secret $S --api-key $K \
      --users $U --conns-per-user $C --callers 64 --push-rate 5000 --duration 15s --workers 2 \
      "${flags[@]}" "$@" --json $f.json > $f.txt 2>&1
    kill $pid; wait $pid 2>/dev/null
    echo "$m $r (load $load): $(grep -E '^server CPU  ' $f.txt | tail -1 | sed 's/ \+/ /g')"
    grep -E '^(end-to-end|acks|wait answers|acked round trip|pushes) ' $f.txt | sed "s/^/  /"
  done
done
