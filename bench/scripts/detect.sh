#!/bin/bash
# kill -9 / SIGSTOP detection time on a 3-node loopback cluster with default timings.
# Usage: LONGLINK=path/to/longlink detect.sh KILL|STOP
B=${LONGLINK:-./longlink}; SIG=${1:-KILL}
export LONGLINK_TOKEN_SECRET=detect-secret-0123456789abcdef
start() { $B serve --node-name $1 --client-addr 127.0.0.1:$2 --api-addr 127.0.0.1:$3 --gossip-addr 127.0.0.1:$4 --api-key k --log-level error $5 >/dev/null 2>&1 & echo $!; }
p1=$(start d1 28180 28181 28182 ""); sleep 0.5
p2=$(start d2 28190 28191 28192 "--join 127.0.0.1:28182")
p3=$(start d3 28200 28201 28202 "--join 127.0.0.1:28182")
for i in $(seq 50); do n=$(curl -s -H 'Authorization: Bearer k' 127.0.0.1:28181/v1/cluster | grep -o '"state":"alive"' | wc -l); [ "$n" = 3 ] && break; sleep 0.1; done
t0=$(date +%s%N); kill -$SIG $p3
while :; do s=$(curl -s -H 'Authorization: Bearer k' 127.0.0.1:28181/v1/cluster | grep -o '"name":"d3"[^}]*' | grep -o '"state":"[a-z]*"'); [ "$s" = '"state":"dead"' ] && break; sleep 0.02; done
t1=$(date +%s%N); echo "$SIG: d3 marked dead after $(( (t1-t0)/1000000 )) ms"
kill -CONT $p3 2>/dev/null; kill -9 $p1 $p2 $p3 2>/dev/null; wait 2>/dev/null
