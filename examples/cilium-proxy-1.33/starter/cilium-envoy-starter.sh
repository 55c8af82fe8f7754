#!/bin/sh
# Stand-in for cilium-envoy-starter: starts /usr/bin/cilium-envoy as a child
# (dropping a leading "--", as the DaemonSet passes `cilium-envoy-starter -- <envoy args>`),
# forwards SIGTERM/SIGINT and exits with its status.
[ "${1:-}" = "--" ] && shift
/usr/bin/cilium-envoy "$@" &
child=$!
forward() { kill -"$1" "$child" 2>/dev/null; }
trap 'forward TERM' TERM
trap 'forward INT' INT
status=0
while :; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || break
done
exit "$status"
