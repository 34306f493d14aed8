#!/usr/bin/env bash
# Small-file HTTP req/s of two fdfs builds, side by side: one single-server
# sandbox each, wrk runs alternated between them, the ratio per pair.
# Measures; never asserts.
#
#   bench/http_ab_small.sh <before fdfs> <after fdfs>      # ROUNDS=5
set -euo pipefail
OLD=${1:?before binary}; NEW=${2:?after binary}; ROUNDS=${ROUNDS:-5}
D=$(mktemp -d /tmp/fdfs-ab-XXXXXX)
"$OLD" sandbox --dir "$D/a" --groups 1 --servers 1 --net 127.0.71 --metrics-port 0 --gateway-port 0 >"$D/a.log" 2>&1 &
A=$!
"$NEW" sandbox --dir "$D/b" --groups 1 --servers 1 --net 127.0.72 --metrics-port 0 --gateway-port 0 >"$D/b.log" 2>&1 &
B=$!
trap 'kill -INT $A $B 2>/dev/null; sleep 2; rm -rf "$D"' EXIT
head -c 4096 /dev/urandom >"$D/small"
until IA=$("$OLD" upload-file "$D/a/client/client.conf" "$D/small" 2>/dev/null); do sleep 1; done
until IB=$("$NEW" upload-file "$D/b/client/client.conf" "$D/small" 2>/dev/null); do sleep 1; done
rps() { wrk -t2 -c32 -d5s "$1" | awk '/Requests\/sec/ {print $2}'; }
for _ in $(seq "$ROUNDS"); do
  a=$(rps "http://127.0.71.11:8888/$IA")
  b=$(rps "http://127.0.72.11:8888/$IB")
  echo "before $a after $b ratio $(python3 -c "print(round($b / $a, 3))")"
done
