#!/bin/bash
# Cross-node pushes: three nodes on loopback, clients on n1, pushes posted to n2.
# Usage: OLD=path/to/old NEW=path/to/new clusterab.sh [extra bench flags]
S=0123456789abcdef0123 K=key-0123456789
for r in 1 2; do
  for b in old new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    pids=()
    for i in 1 2 3; do
      join=""; [ $i -gt 1 ] && join="--join 127.0.0.1:28312"
      $bin serve --node-name c$i --client-addr 127.0.0.1:283${i}0 --api-addr 127.0.0.1:283${i}1 --gossip-addr 127.0.0.1:283${i}2 \
        --token-secret $S --api-key $K --demo=false --log-level error $join > /dev/null 2>&1 &
      pids+=($!); sleep 0.3
    done
    for i in $(seq 100); do n=$(curl -s -H "Authorization: Bearer $K" 127.0.0.1:28321/v1/cluster | grep -o '"state":"alive"' | wc -l); [ "$n" = 3 ] && break; sleep 0.1; done
    sleep 1
    $NEW bench push --target 127.0.0.1:28310 --api 127.0.0.1:28321 --token-secret $S --api-key $K \
      --users 5000 --conns-per-user 1 --callers 32 --push-rate 2000 --duration 10s --workers 1 "$@" > ${OUT:-/tmp}/cab-$b-$r.txt 2>&1
    kill ${pids[@]}; wait 2>/dev/null
    echo "$b $r: $(grep -h 'pushes (' ${OUT:-/tmp}/cab-$b-$r.txt)"
  done
done
