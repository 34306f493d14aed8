#!/bin/bash
# Upload runs of several builds on ONE sandbox folder, alternated round by
# round, so every build meets the same data and disk state (fresh sandboxes
# differ more from each other than small changes do on a shared VM).
# Per run it prints the bench's upload line, and, when `perf` is there, the
# fdatasync calls per upload (system-wide) and the machine's busy CPU time
# per 1,000 uploads (/proc/stat): both steadier than ops/s on a noisy host.
#
#   bench/paired_uploads.sh target/release/fdfs /tmp/fdfs-old
#
# Environment: DIR (the sandbox folder; default $TMPDIR/fdfs-paired), SIZE
# (4K), FILES (10000), ROUNDS (3), C (16 clients), SANDBOX_ARGS (default
# "--durable true --durable-sync journal"). Figures are printed, never
# asserted: record them in docs/benchmarks.md.
set -eu
D=${DIR:-${TMPDIR:-/tmp}/fdfs-paired}; SIZE=${SIZE:-4K}; FILES=${FILES:-10000}
ROUNDS=${ROUNDS:-3}; C=${C:-16}; ARGS=${SANDBOX_ARGS:---durable true --durable-sync journal}
[ $# -ge 1 ] || { echo "usage: $0 BUILD [BUILD...]" >&2; exit 2; }

start() {
    # shellcheck disable=SC2086
    setsid "$1" sandbox --dir "$D" --groups 2 --servers 2,1 --net 127.9.5 --http-port 0 \
        --gateway-port 0 $ARGS >/dev/null 2>&1 &
    for _ in $(seq 1 240); do
        if [ -f "$D/client/client.conf" ] &&
            [ "$("$1" monitor "$D/client/client.conf" 2>/dev/null | grep -c ACTIVE)" -ge 3 ]; then
            sync; sleep 1; return
        fi
        sleep 0.5
    done
    echo "$1: the sandbox in $D did not become ACTIVE" >&2; stop; exit 1
}
stop() {
    pkill -INT -f "sandbox --dir $D" || true
    while pgrep -f "sandbox --dir $D" >/dev/null; do sleep 0.2; done
}
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
trap stop EXIT

for _ in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
        start "$bin"
        bench=("$bin" bench "$D/client/client.conf" --files "$FILES" --size "$SIZE"
            --concurrency "$C" --ops upload --lag-samples 0)
        b0=$(busy)
        if command -v perf >/dev/null; then
            line=$(perf stat -a -e syscalls:sys_enter_fdatasync -x, -o "$D.perf" -- "${bench[@]}" | sed -n 3p)
            syncs=$(grep fdatasync "$D.perf" | cut -d, -f1)
            extra=$(awk -v s="$syncs" -v f="$FILES" 'BEGIN{printf "fdatasyncs/upload %.2f", s/f}')
        else
            line=$("${bench[@]}" | sed -n 3p); extra=""
        fi
        b1=$(busy)
        cpu=$(( (b1 - b0) * 1000000 / $(getconf CLK_TCK) / FILES ))
        printf "%-24s %s  %s  cpu ms/1000 uploads %d\n" "$(basename "$bin")" "$line" "$extra" "$cpu"
        stop
    done
done
