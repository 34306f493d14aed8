#!/usr/bin/env bash
# Tail latency of small-file HTTP requests on a storage while large files
# are downloaded cold (dropped from the page cache first): whether large
# downloads stall the connections that share a worker thread with them.
# Measures; never asserts.
#
#   FDFS_BIN=target/release/fdfs bench/http_cold_tail.sh
#
# Knobs (environment): FDFS_BIN (required), NET (127.0.58, the sandbox's
# loopback prefix), ROUNDS (4), BIG_MIB (256), BIG_CLIENTS (4), DURATION
# (4s, one wrk run per round: -t1 -c8 on a 4 KiB file).
set -euo pipefail
BIN=${FDFS_BIN:?set FDFS_BIN to an fdfs binary}
NET=${NET:-127.0.58}
ROUNDS=${ROUNDS:-4}
BIG_MIB=${BIG_MIB:-256}
BIG_CLIENTS=${BIG_CLIENTS:-4}
DURATION=${DURATION:-4s}
D=$(mktemp -d /tmp/fdfs-cold-XXXXXX)
cleanup() { kill -INT "$SB" 2>/dev/null; sleep 2; rm -rf "$D"; }
"$BIN" sandbox --dir "$D/sb" --groups 1 --servers 1 --net "$NET" --metrics-port 0 --gateway-port 0 >"$D/sandbox.log" 2>&1 &
SB=$!
trap cleanup EXIT
head -c 4096 /dev/urandom >"$D/small"
head -c $((BIG_MIB << 20)) /dev/urandom >"$D/big"
# The first start makes the store's directories: wait until uploads work.
until SMALL=$("$BIN" upload-file "$D/sb/client/client.conf" "$D/small" 2>/dev/null); do sleep 1; done
BIG=$("$BIN" upload-file "$D/sb/client/client.conf" "$D/big")
STORED=$(find "$D/sb/group1-1" -path "*/data/*" -name "$(basename "$BIG")" | head -1)
URL=http://${NET}.11:8888
echo "round  small-file req/s  p50  p99  (beside $BIG_CLIENTS cold ${BIG_MIB} MiB downloads)"
for round in $(seq "$ROUNDS"); do
  sync
  python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$STORED"
  (for _ in $(seq "$BIG_CLIENTS"); do curl -s -o /dev/null "$URL/$BIG" & done; wait) &
  BIGS=$!
  OUT=$(wrk -t1 -c8 -d"$DURATION" --latency "$URL/$SMALL")
  wait $BIGS
  RPS=$(awk '/Requests\/sec/ {print $2}' <<<"$OUT")
  P50=$(awk '$1 == "50%" {print $2}' <<<"$OUT")
  P99=$(awk '$1 == "99%" {print $2}' <<<"$OUT")
  echo "$round  $RPS  $P50  $P99"
done
