#!/bin/bash
# Memory per stored message: one node, 10,000 users x 10 pushes of 64 bytes (history on),
# RSS and longlink_history_bytes before and after, then the same with "history":false.
# Usage: LONGLINK=path/to/longlink histmem.sh
B=${LONGLINK:-./longlink}; S=0123456789abcdef0123 K=key-0123456789
for hist in true false; do
$B serve --client-addr 127.0.0.1:28080 --api-addr 127.0.0.1:28081 --token-secret $S --api-key $K --demo=false --log-level error --history-size 64 > /dev/null 2>&1 &
pid=$!
for i in $(seq 50); do curl -s 127.0.0.1:28081/healthz >/dev/null && break; sleep 0.1; done
rss0=$(grep VmRSS /proc/$pid/status | awk '{print $2}')
data=$(printf 'x%.0s' $(seq 64))
for r in $(seq 10); do
  for b in $(seq 0 9); do
    python3 - "$b" "$data" "$hist" > /tmp/batch.json <<'PY'
import json,sys
b=int(sys.argv[1]); d=sys.argv[2]; h=sys.argv[3]=="true"
print(json.dumps({"messages":[{"to":{"users":["u%d"%(b*1000+i)]},"data":d,"history":h} for i in range(1000)]}))
PY
    curl -s -o /dev/null -X POST -H "Authorization: Bearer $K" --data-binary @/tmp/batch.json 127.0.0.1:28081/v1/push/batch
  done
done
sleep 1
rss1=$(grep VmRSS /proc/$pid/status | awk '{print $2}')
m=$(curl -s 127.0.0.1:28081/metrics | grep -E '^longlink_history_(bytes|messages|streams) ' | tr '\n' ' ')
echo "history=$hist: RSS $rss0 -> $rss1 kB (+$(( (rss1-rss0) )) kB for 100,000 messages = $(( (rss1-rss0)*1024/100000 )) B/message); $m"
kill $pid; wait $pid 2>/dev/null
done
