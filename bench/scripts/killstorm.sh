#!/bin/bash
# Reconnect storm after a real node kill: nodes A and B on loopback, N v2 clients on A;
# the bench drops them, kills A (kill -9), pushes M messages per user through B while
# they are away, and all reconnect to B with their positions.
# Usage: LONGLINK=path/to/longlink killstorm.sh [conns] [messages]
B=${LONGLINK:-./longlink}; N=${1:-19000}; M=${2:-10}
S=0123456789abcdef0123 K=key-0123456789
$B serve --node-name ka --client-addr 127.0.0.1:28410 --api-addr 127.0.0.1:28411 --gossip-addr 127.0.0.1:28412 \
  --token-secret $S --api-key $K --demo=false --log-level error > /dev/null 2>&1 &
A=$!; sleep 0.5
$B serve --node-name kb --client-addr 127.0.0.1:28420 --api-addr 127.0.0.1:28421 --gossip-addr 127.0.0.1:28422 \
  --join 127.0.0.1:28412 --token-secret $S --api-key $K --demo=false --log-level error > /dev/null 2>&1 &
PB=$!
for i in $(seq 100); do n=$(curl -s -H "Authorization: Bearer $K" 127.0.0.1:28421/v1/cluster | grep -o '"state":"alive"' | wc -l); [ "$n" = 2 ] && break; sleep 0.1; done
$B bench reconnect --target 127.0.0.1:28410 --api 127.0.0.1:28421 --reconnect-target 127.0.0.1:28420 --kill-pid $A \
  --token-secret $S --api-key $K --conns $N --messages $M --workers 2 "${@:3}"
rc=$?
kill $A $PB 2>/dev/null; wait 2>/dev/null
exit $rc
