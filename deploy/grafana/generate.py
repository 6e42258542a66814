#!/usr/bin/env python3
"""Generates longlink.json, the Grafana dashboard. Edit here, then run: python3 deploy/grafana/generate.py

Panels are declared in order; the layout (8-wide tiles in rows) is computed. Every
expression is plain PromQL over the metrics in docs/metrics.md."""
import json
import os
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
I = 'instance=~"$instance"'
RI = '$__rate_interval'
panels = []
pid = [0]
y = [0]

def nid():
    pid[0] += 1
    return pid[0]

def row(title):
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1

cur = {"x": 0, "h": 8}
def place(w, h):
    if cur["x"] + w > 24:
        cur["x"] = 0
        y[0] += cur["h"]
    g = {"h": h, "w": w, "x": cur["x"], "y": y[0]}
    cur["x"] += w
    cur["h"] = h
    return g

def flush():
    if cur["x"] > 0:
        y[0] += cur["h"]
        cur["x"] = 0

def ts(title, targets, unit="short", w=8, h=8, desc="", stack=False):
    panels.append({
        "type": "timeseries", "title": title, "id": nid(), "datasource": DS,
        "description": desc, "gridPos": place(w, h),
        "fieldConfig": {"defaults": {"unit": unit, "custom": {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 30,
            "showPoints": "never", "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"}}},
            "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"datasource": DS, "refId": chr(65 + i), "expr": e, "legendFormat": l, "range": True}
                    for i, (e, l) in enumerate(targets)],
    })

def stat(title, expr, unit="short", w=4, h=4, desc="", thresholds=None):
    panels.append({
        "type": "stat", "title": title, "id": nid(), "datasource": DS, "description": desc,
        "gridPos": place(w, h),
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": thresholds or {"mode": "absolute", "steps": [{"color": "green", "value": None}]}}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto", "orientation": "auto"},
        "targets": [{"datasource": DS, "refId": "A", "expr": expr, "instant": False, "range": True}],
    })

def q(p, metric, by="", extra=""):
    b = f"le{',' + by if by else ''}"
    return f'histogram_quantile({p}, sum by ({b}) (rate({metric}_bucket{{{I}{extra}}}[{RI}])))'

row("Overview")
stat("Nodes up", f'sum(up{{{I}}})', desc="Scrape targets answering /metrics.",
     thresholds={"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]})
stat("Connections", f'sum(longlink_connections{{{I}}})', desc="Open WebSocket connections across the selected nodes.")
stat("Users", f'sum(longlink_users{{{I}}})', desc="Distinct users with at least one connection (summed per node).")
stat("Rooms", f'sum(longlink_rooms{{{I}}})', desc="Rooms with at least one local member (summed per node).")
stat("Pushes/s", f'sum(rate(longlink_pushes_total{{{I}}}[{RI}]))', unit="reqps")
stat("Delivery p99", q(0.99, "longlink_delivery_duration_seconds"), unit="s")
flush()

row("Connections")
ts("Connections per node", [(f'sum by (instance) (longlink_connections{{{I}}})', "{{instance}}")],
   desc="longlink_connections: a sudden drop on one node is a crash or a network partition; on all nodes, a client-side problem.")
ts("Connections per event loop", [(f'longlink_loop_connections{{{I}}}', "{{instance}} loop {{loop}}")],
   desc="longlink_loop_connections: loops should be balanced; one hot loop means gnet's load balancing is off.")
ts("Connections mid-handshake", [(f'sum by (instance) (longlink_handshaking_connections{{{I}}})', "{{instance}}")],
   desc="longlink_handshaking_connections: TCP accepted, upgrade not finished. A plateau means clients (or scanners) open sockets and stall.")
ts("Users and rooms", [(f'sum by (instance) (longlink_users{{{I}}})', "users {{instance}}"),
                       (f'sum by (instance) (longlink_rooms{{{I}}})', "rooms {{instance}}")])
ts("Handshakes/s", [(f'sum by (instance) (rate(longlink_handshakes_total{{{I}}}[{RI}]))', "{{instance}}")], unit="ops",
   desc="Successful upgrades. Spikes follow node restarts (clients reconnect with jittered backoff).")
ts("Handshake failures/s by reason", [(f'sum by (reason) (rate(longlink_handshake_failures_total{{{I}}}[{RI}]))', "{{reason}}")], unit="ops", stack=True,
   desc="unauthorized: bad or expired tokens; timeout: clients too slow to send the upgrade; over_capacity/draining: the node refused on purpose.")
ts("Handshake duration", [(q(0.5, "longlink_handshake_duration_seconds"), "p50"), (q(0.99, "longlink_handshake_duration_seconds"), "p99")], unit="s")
ts("Closes/s by code", [(f'sum by (code) (rate(longlink_closes_total{{{I}}}[{RI}]))', "{{code}}")], unit="ops", stack=True,
   desc="Close code the server sent (none = the peer vanished). 1001 during deploys, 4000 evictions, 4003 token expiry, 4008 slow consumers.")
ts("Slow-consumer closes and evictions/s", [(f'sum by (instance) (rate(longlink_slow_consumer_closes_total{{{I}}}[{RI}]))', "slow {{instance}}"),
                                           (f'sum by (instance) (rate(longlink_evictions_total{{{I}}}[{RI}]))', "evicted {{instance}}")], unit="ops")
ts("Open file descriptors", [(f'process_open_fds{{{I}}}', "open {{instance}}"), (f'process_max_fds{{{I}}}', "limit {{instance}}")],
   desc="Every connection is a file descriptor; the limit is LimitNOFILE / ulimit -n.")
flush()

row("Traffic")
ts("Frames/s", [(f'sum by (instance) (rate(longlink_frames_in_total{{{I}}}[{RI}]))', "in {{instance}}"),
                (f'-sum by (instance) (rate(longlink_frames_out_total{{{I}}}[{RI}]))', "out {{instance}}")], unit="ops",
   desc="WebSocket frames received (positive) and sent (negative).")
ts("Bytes/s", [(f'sum by (instance) (rate(longlink_bytes_in_total{{{I}}}[{RI}]))', "in {{instance}}"),
               (f'-sum by (instance) (rate(longlink_bytes_out_total{{{I}}}[{RI}]))', "out {{instance}}")], unit="Bps",
   desc="Bytes on client connections, received (positive) and sent (negative).")
ts("Push bytes/s", [(f'sum by (instance) (rate(longlink_push_bytes_total{{{I}}}[{RI}]))', "{{instance}}")], unit="Bps")
flush()

row("Push API")
ts("Pushes/s by target", [(f'sum by (target) (rate(longlink_pushes_total{{{I}}}[{RI}]))', "{{target}}")], unit="ops", stack=True)
ts("Recipients/s", [(f'sum by (instance) (rate(longlink_push_recipients_total{{{I}}}[{RI}]))', "{{instance}}")], unit="ops",
   desc="Connections a push was written to; recipients/pushes is the fan-out.")
ts("Push errors/s by reason", [(f'sum by (reason) (rate(longlink_push_errors_total{{{I}}}[{RI}]))', "{{reason}}")], unit="ops", stack=True)
ts("API requests/s by route and code", [(f'sum by (route, code) (rate(longlink_api_requests_total{{{I}}}[{RI}]))', "{{route}} {{code}}")], unit="reqps")
ts("API latency p50 / p99", [(q(0.5, "longlink_api_request_duration_seconds", "route"), "p50 {{route}}"),
                             (q(0.99, "longlink_api_request_duration_seconds", "route"), "p99 {{route}}")], unit="s")
ts("Delivery latency (API accept to socket write)", [(q(0.5, "longlink_delivery_duration_seconds"), "p50"),
                                                     (q(0.99, "longlink_delivery_duration_seconds"), "p99"),
                                                     (q(0.999, "longlink_delivery_duration_seconds"), "p99.9")], unit="s")
flush()

row("Cluster")
ts("Cluster members by state", [(f'max by (state) (longlink_cluster_members{{{I}}})', "{{state}}")],
   desc="Each node reports its own memberlist view; max across nodes shows the worst view. Any dead member needs attention.")
ts("Forwarded messages/s", [(f'sum by (instance) (rate(longlink_cluster_forward_messages_total{{{I}}}[{RI}]))', "sent {{instance}}"),
                            (f'sum by (instance) (rate(longlink_cluster_received_messages_total{{{I}}}[{RI}]))', "received {{instance}}")], unit="ops")
ts("Forwarded bytes/s", [(f'sum by (instance) (rate(longlink_cluster_forward_bytes_total{{{I}}}[{RI}]))', "{{instance}}")], unit="Bps")
ts("Forward failures and retries/s", [(f'sum by (instance) (rate(longlink_cluster_forward_failures_total{{{I}}}[{RI}]))', "failures {{instance}}"),
                                      (f'sum by (instance) (rate(longlink_cluster_forward_retries_total{{{I}}}[{RI}]))', "retries {{instance}}"),
                                      (f'sum by (instance) (rate(longlink_cluster_handshake_failures_total{{{I}}}[{RI}]))', "peer handshake failures {{instance}}")], unit="ops",
   desc="Failures lose pushes for users on other nodes; peer handshake failures usually mean a --cluster-key mismatch.")
ts("Route updates/s", [(f'sum by (instance) (rate(longlink_cluster_route_updates_total{{{I}}}[{RI}]))', "{{instance}}")], unit="ops",
   desc="Routing-table changes gossiped between nodes; follows connect/disconnect churn.")
flush()

row("Process")
ts("Resident memory", [(f'process_resident_memory_bytes{{{I}}}', "{{instance}}")], unit="bytes")
ts("CPU", [(f'rate(process_cpu_seconds_total{{{I}}}[{RI}])', "{{instance}}")], unit="percentunit",
   desc="Cores used (1.0 = one full core).")
ts("Goroutines and threads", [(f'go_goroutines{{{I}}}', "goroutines {{instance}}"), (f'go_threads{{{I}}}', "threads {{instance}}")],
   desc="Goroutines must not grow with connections: the event loops own them.")
ts("GC cycles/s and CPU", [(f'rate(go_gc_duration_seconds_count{{{I}}}[{RI}])', "cycles/s {{instance}}"),
                          (f'rate(go_gc_cpu_seconds_total{{{I}}}[{RI}])', "GC cores {{instance}}")])
ts("GC pause max", [(f'go_gc_duration_seconds{{{I}, quantile="1"}}', "{{instance}}")], unit="s")
ts("Heap", [(f'go_memstats_heap_inuse_bytes{{{I}}}', "in use {{instance}}"), (f'go_memstats_next_gc_bytes{{{I}}}', "next GC {{instance}}")], unit="bytes")
flush()

dash = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "Prometheus scraping the longlink API ports",
                  "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "__elements": {},
    "__requires": [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
    ],
    "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
                              "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
    "description": "longlink WebSocket gateway: connections, handshakes, traffic, pushes, cluster and process health.",
    "editable": True, "fiscalYearStartMonth": 0, "graphTooltip": 1, "id": None, "links": [],
    "panels": panels, "refresh": "30s", "schemaVersion": 39, "tags": ["longlink", "websocket"],
    "templating": {"list": [{
        "name": "instance", "label": "Instance", "type": "query", "datasource": DS,
        "definition": "label_values(longlink_connections, instance)",
        "query": {"query": "label_values(longlink_connections, instance)", "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
        "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1, "regex": "", "hide": 0, "options": [],
    }]},
    "time": {"from": "now-3h", "to": "now"}, "timepicker": {}, "timezone": "",
    "title": "longlink", "uid": "longlink-gateway", "version": 1, "weekStart": "",
}
json.dump(dash, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "longlink.json"), "w"), indent=2)
print(len(panels), "panels")
