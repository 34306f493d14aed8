#!/usr/bin/env bash
# HTTP download throughput of fastdfs-rs (storage HTTP, gateway with a warm
# cache) beside Debian's nginx serving the same files statically, on this
# machine, in the same run. Measures; never asserts. Results go to stdout
# (copy them into the HTTP section of docs/benchmarks.md by hand).
#
#   bench/http_vs_nginx.sh            # 2 rounds, 10 s per wrk run
#   ROUNDS=3 DURATION=15s bench/http_vs_nginx.sh
#
# Knobs (environment): ROUNDS (2), DURATION (10s), THREADS (2),
# SMALL_CONN (32), LARGE_CONN (8), SMALL_SIZE (4096 bytes),
# LARGE_MIB (256), NGINX_WORKERS (auto), KEEP=1 keeps the temp dir,
# HOLD=1 starts everything, prints the URLs and pids, and waits (profiling),
# CARGO_TARGET_DIR (where the release build goes; default <repo>/target),
# FDFS_BIN=path uses that fdfs binary instead of building one.
#
# Everything listens on 127.x only: tracker 127.0.0.1, storage (and its HTTP)
# 127.0.0.61, nginx 127.0.0.62, gateway 127.0.0.63; ports are picked free.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
SMALL_CONN=${SMALL_CONN:-32}
LARGE_CONN=${LARGE_CONN:-8}
SMALL_SIZE=${SMALL_SIZE:-4096}
LARGE_MIB=${LARGE_MIB:-256}
NGINX_WORKERS=${NGINX_WORKERS:-auto}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

STORAGE_IP=127.0.0.61
NGINX_IP=127.0.0.62
GATEWAY_IP=127.0.0.63

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- tools -----------------------------------------------------------------
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v curl >/dev/null || need_apt+=(curl)
command -v ss >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]} with apt-get"
    apt-get update -qq
    pkgs=("${need_apt[@]/nginx/nginx-light}")
    # nginx-light is gone from newer Debian releases: plain nginx then.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in wrk "$NGINX" curl md5sum ss; do
    command -v "$t" >/dev/null || die "$t not found"
done

if [ -n "${FDFS_BIN:-}" ]; then
    FDFS=$FDFS_BIN # e.g. an older build, for before/after figures
    log "using $FDFS (no build)"
else
    log "building fdfs (release) into $TARGET_DIR"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p fdfs)
    FDFS=$TARGET_DIR/release/fdfs
fi
[ -x "$FDFS" ] || die "$FDFS missing"

# ---- temp dir, processes, cleanup ------------------------------------------
WORK=$(mktemp -d /tmp/fdfs-httpbench.XXXXXX)
PIDS=()
cleanup() {
    local p
    # Reverse start order: gateway and nginx, storage, then the tracker.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        p=${PIDS[i]}
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
    done
    kill $(jobs -p) 2>/dev/null || true # HOLD's sleep
    if [ "${KEEP:-0}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on (any address), from a random start.
used_ports=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        case "$used_ports" in *" $p "*) continue ;; esac
        if ! ss -Htan "( sport = :$p )" | grep -q .; then
            used_ports+="$p "
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

wait_port() { # ip port what
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$3 does not listen on $1:$2 (logs in $WORK)"
}

TRACKER_PORT=$(free_port)
STORAGE_PORT=$(free_port)
HTTP_PORT=$(free_port)
NGINX_PORT=$(free_port)
GATEWAY_PORT=$(free_port)

# ---- tracker + storage -----------------------------------------------------
mkdir -p "$WORK/tracker" "$WORK/storage" "$WORK/client" "$WORK/nginx" "$WORK/gateway"
cat >"$WORK/tracker/tracker.conf" <<EOF
bind_addr = 127.0.0.1
port = $TRACKER_PORT
base_path = $WORK/tracker
store_lookup = 0
reserved_storage_space = 1%
EOF
cat >"$WORK/storage/storage.conf" <<EOF
group_name = group1
bind_addr = $STORAGE_IP
port = $STORAGE_PORT
base_path = $WORK/storage
store_path_count = 1
store_path0 = $WORK/storage
tracker_server = 127.0.0.1:$TRACKER_PORT
heart_beat_interval = 2
durable = false
http.server_port = $HTTP_PORT
EOF
cat >"$WORK/client/client.conf" <<EOF
base_path = $WORK/client
tracker_server = 127.0.0.1:$TRACKER_PORT
connect_timeout = 5
network_timeout = 120
EOF

log "starting tracker 127.0.0.1:$TRACKER_PORT and storage $STORAGE_IP:$STORAGE_PORT (HTTP $HTTP_PORT)"
"$FDFS" tracker "$WORK/tracker/tracker.conf" start --foreground >"$WORK/tracker/console.log" 2>&1 &
PIDS+=($!)
wait_port 127.0.0.1 "$TRACKER_PORT" tracker
"$FDFS" storage "$WORK/storage/storage.conf" start --foreground >"$WORK/storage/console.log" 2>&1 &
STORAGE_PID=$!
PIDS+=($!)
wait_port "$STORAGE_IP" "$HTTP_PORT" "storage HTTP"

head -c "$SMALL_SIZE" /dev/urandom >"$WORK/small.bin"
head -c $((LARGE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/large.bin"
LARGE_SIZE=$((LARGE_MIB * 1024 * 1024))

upload() { # file -> file id (retries until the storage is ACTIVE)
    local id
    for _ in $(seq 1 60); do
        if id=$("$FDFS" upload-file "$WORK/client/client.conf" "$1" 2>"$WORK/client/upload.err"); then
            echo "$id"
            return
        fi
        sleep 0.5
    done
    die "upload of $1 failed: $(cat "$WORK/client/upload.err")"
}
log "uploading ${SMALL_SIZE} B and ${LARGE_MIB} MiB files"
SMALL_ID=$(upload "$WORK/small.bin")
LARGE_ID=$(upload "$WORK/large.bin")
log "small: $SMALL_ID"
log "large: $LARGE_ID"
case "$SMALL_ID$LARGE_ID" in *group1/M00/*group1/M00/*) ;; *) die "unexpected file ids" ;; esac

# ---- nginx -----------------------------------------------------------------
cat >"$WORK/nginx/nginx.conf" <<EOF
# Minimal static server for the comparison (written by bench/http_vs_nginx.sh).
user root;
worker_processes $NGINX_WORKERS;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen $NGINX_IP:$NGINX_PORT;
        location /group1/M00/ { alias $WORK/storage/data/; }
    }
}
EOF
log "starting nginx $NGINX_IP:$NGINX_PORT (worker_processes $NGINX_WORKERS)"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" \
    >"$WORK/nginx/console.log" 2>&1 &
NGINX_PID=$!
PIDS+=($!)
wait_port "$NGINX_IP" "$NGINX_PORT" nginx

# ---- gateway ---------------------------------------------------------------
cat >"$WORK/gateway/gateway.conf" <<EOF
bind_addr = $GATEWAY_IP
port = $GATEWAY_PORT
tracker_server = 127.0.0.1:$TRACKER_PORT
storage_http_port = $HTTP_PORT
refresh_interval = 2s
network_timeout = 60s
cache_path = $WORK/gateway/cache
cache_max_size = $((LARGE_MIB * 4 + 64))M
EOF
log "starting gateway $GATEWAY_IP:$GATEWAY_PORT (cache on)"
RUST_LOG=warn "$FDFS" gateway "$WORK/gateway/gateway.conf" >"$WORK/gateway/console.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=($!)
wait_port "$GATEWAY_IP" "$GATEWAY_PORT" gateway

STORAGE_URL="http://$STORAGE_IP:$HTTP_PORT"
GATEWAY_URL="http://$GATEWAY_IP:$GATEWAY_PORT"
NGINX_URL="http://$NGINX_IP:$NGINX_PORT"

# Same bytes from all three; the gateway's second fetch must be a cache hit.
check() { # base id local
    local got want
    want=$(md5sum <"$3" | cut -d' ' -f1)
    got=$(curl -fsS "$1/$2" | md5sum | cut -d' ' -f1) || die "GET $1/$2 failed"
    [ "$got" = "$want" ] || die "$1/$2 returned other bytes"
}
for _ in $(seq 1 50); do # the gateway learns the storage from the tracker
    curl -fsS -o /dev/null "$GATEWAY_URL/$SMALL_ID" 2>/dev/null && break
    sleep 0.2
done
for base in "$STORAGE_URL" "$GATEWAY_URL" "$NGINX_URL"; do
    check "$base" "$SMALL_ID" "$WORK/small.bin"
    check "$base" "$LARGE_ID" "$WORK/large.bin"
done
for id in "$SMALL_ID" "$LARGE_ID"; do
    curl -fsS -D - -o /dev/null "$GATEWAY_URL/$id" | grep -qi '^x-cache: HIT' ||
        die "gateway does not answer $id from its cache"
done
log "all three serve identical bytes; gateway cache is warm"
if [ "${HOLD:-0}" = 1 ]; then # for profiling by hand
    printf 'storage %s/%s\ngateway %s/%s\nnginx   %s/%s\nlarge   %s\npids    %s\n' \
        "$STORAGE_URL" "$SMALL_ID" "$GATEWAY_URL" "$SMALL_ID" "$NGINX_URL" "$SMALL_ID" \
        "$LARGE_ID" "${PIDS[*]}" | tee "$WORK/hold.txt"
    log "HOLD=1: up until interrupted"
    while :; do sleep 3600 & wait $! || break; done
fi

# ---- measure ---------------------------------------------------------------
# wrk's "Transfer/sec" (1024-based units) counts every byte read, headers and
# unfinished responses included, so it is right for the large file where a
# 10 s run finishes few whole responses.
#
# Beside throughput, the server's own CPU time (user + system, all threads,
# nginx's workers included) per request / per GiB: on a shared machine this
# varies much less between runs than req/s does.
to_mib() { # "1.23GB" -> MiB
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "B") ? 1 / 1048576 : (u == "KB") ? 1 / 1024 : (u == "MB") ? 1 : (u == "GB") ? 1024 : (u == "TB") ? 1048576 : 0
        printf "%.1f", n * f }'
}
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid... -> utime + stime of those processes
    local t=0 p f
    for p in "$@"; do
        # Fields after the ")" of the command name: utime is the 12th, stime the 13th.
        f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        t=$((t + $(awk '{print $12 + $13}' <<<"$f")))
    done
    echo "$t"
}
target_pids() {
    case $1 in
        storage) echo "$STORAGE_PID" ;;
        gateway) echo "$GATEWAY_PID" ;;
        nginx) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID") ;;
    esac
}
RESULTS=$WORK/results.tsv
: >"$RESULTS"
run_wrk() { # target size url conns round
    local out rps tps mib errs pids t0 t1 n secs cpu
    pids=$(target_pids "$1")
    t0=$(cpu_ticks $pids)
    out=$(wrk -t"$THREADS" -c"$3" -d"$DURATION" --timeout 30s "$4" 2>&1) || die "wrk failed: $out"
    t1=$(cpu_ticks $pids)
    echo "$out" >>"$WORK/wrk.log"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    tps=$(awk '/^Transfer\/sec:/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    secs=$(awk '/requests in/ {v = $4; sub(/s,$/, "", v); print v}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
    mib=$(to_mib "$tps")
    # small: CPU µs per request; large: CPU ms per GiB sent.
    if [ "$2" = small ]; then
        cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    else
        cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v m="$mib" -v s="$secs" 'BEGIN {printf "%.0f", t / hz * 1e3 / (m * s / 1024)}')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$5" "$1" "$2" "$rps" "$mib" "$cpu" "$errs" >>"$RESULTS"
    log "round $5  $(printf '%-8s %-5s' "$1" "$2") $(printf '%10.1f' "$rps") req/s $(printf '%9.1f' "$mib") MiB/s  CPU $cpu $([ "$2" = small ] && echo µs/req || echo ms/GiB) ${errs}"
}
log "wrk -t$THREADS -d$DURATION: small file -c$SMALL_CONN, large file -c$LARGE_CONN; $ROUNDS rounds"
order=(storage gateway nginx)
for ((r = 1; r <= ROUNDS; r++)); do
    for size in small large; do
        for name in "${order[@]}"; do
            case $name in
                storage) base=$STORAGE_URL ;;
                gateway) base=$GATEWAY_URL ;;
                nginx) base=$NGINX_URL ;;
            esac
            if [ "$size" = small ]; then
                run_wrk "$name" small "$SMALL_CONN" "$base/$SMALL_ID" "$r"
            else
                run_wrk "$name" large "$LARGE_CONN" "$base/$LARGE_ID" "$r"
            fi
        done
        # Rotate so no target always runs first (or right after another).
        order=("${order[@]:1}" "${order[0]}")
    done
done

# ---- report ----------------------------------------------------------------
echo
echo "fastdfs-rs HTTP vs nginx — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$THREADS -d$DURATION; small = $SMALL_SIZE B (-c$SMALL_CONN), large = $LARGE_MIB MiB (-c$LARGE_CONN);" \
    "nginx worker_processes $NGINX_WORKERS; $ROUNDS rounds, mean (min–max)"
echo
awk -F'\t' '
    { k = $2 SUBSEP $3; n[k]++; r[k] += $4; m[k] += $5; c[k] += $6
      if (!(k in rmin) || $4 < rmin[k]) rmin[k] = $4; if ($4 > rmax[k]) rmax[k] = $4
      if (!(k in mmin) || $5 < mmin[k]) mmin[k] = $5; if ($5 > mmax[k]) mmax[k] = $5
      if ($7 != "") err[k] = err[k] " " $7 }
    END {
      printf "| target | file | req/s | MiB/s | vs nginx | server CPU | CPU vs nginx |\n"
      printf "|---|---|---:|---:|---:|---:|---:|\n"
      split("small large", sizes, " "); split("storage gateway nginx", targets, " ")
      for (s = 1; s <= 2; s++) for (t = 1; t <= 3; t++) {
        k = targets[t] SUBSEP sizes[s]; if (!(k in n)) continue
        nk = "nginx" SUBSEP sizes[s]
        small = sizes[s] == "small"
        ratio = small ? (r[k] / n[k]) / (r[nk] / n[nk]) : (m[k] / n[k]) / (m[nk] / n[nk])
        printf "| %s | %s | %.0f (%.0f–%.0f) | %.1f (%.1f–%.1f) | %.2fx | %.*f %s | %.2fx |%s\n", targets[t], sizes[s],
          r[k] / n[k], rmin[k], rmax[k], m[k] / n[k], mmin[k], mmax[k], ratio,
          small ? 1 : 0, c[k] / n[k], small ? "µs/req" : "ms/GiB", (c[nk] / n[nk]) / (c[k] / n[k]),
          (k in err) ? "  errors:" err[k] : ""
      }
      print "\nvs nginx: small file by req/s, large file by MiB/s (means over the rounds)."
      print "CPU vs nginx: nginx CPU per request (per GiB) / ours, so 1.00x = as efficient, below = more CPU."
    }' "$RESULTS"
echo
echo "per run (round, target, file, req/s, MiB/s, CPU µs/req or ms/GiB):"
cut -f1-6 "$RESULTS" | column -t
