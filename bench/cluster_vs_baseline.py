#!/usr/bin/env python3
"""`fdfs bench` on two builds side by side: the same cluster shape, the same
series, alternating builds round by round, medians and ratios at the end.

    FDFS_BIN=target/release/fdfs FDFS_BASE=/tmp/fdfs-old bench/cluster_vs_baseline.py

Environment: FDFS_BIN (the build under test), FDFS_BASE (the baseline build;
leave it out to measure one build), ROUNDS (3), FILES (5000 for 4 KiB, 3000
for 64 KiB), DURABLE (false), BENCH_DIR (where the sandboxes go; default the
temp dir), SETTLE_SECS (400, pause before the first round: see main()), KEEP=1 (keep the
sandbox folders), SERIES (a comma list of series labels: 4K, 64K, lag16,
lag1; default all), NEW_SANDBOX_ARGS / BASE_SANDBOX_ARGS (more `fdfs
sandbox` arguments for one build, e.g. `--durable-sync syncfs`: the same
binary can then be both builds), NEW_DURABLE / BASE_DURABLE (DURABLE for one
build only).

The cluster is the reference one of DESIGN.md: a tracker, group1 with two
storages and group2 with one, on loopback, built with `fdfs sandbox` (storage
HTTP and gateway off). Each build gets a fresh folder per round, so no run
uploads right after thousands of deletes (see docs/benchmarks.md), and the
script waits for group1's two servers to hold the same files before the next
series, so no series competes with the previous one's replication.

Figures are printed, never asserted: record them in docs/benchmarks.md.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("ROUNDS", "3"))
FILES = int(os.environ.get("FILES", "5000"))
DURABLE = os.environ.get("DURABLE", "false")

# (label, bench arguments, figures taken from its JSON)
SERIES = [
    ("4K", ["--files", str(FILES), "--size", "4K", "--concurrency", "16",
            "--ops", "upload,download", "--lag-samples", "0"], ["upload", "download"]),
    ("64K", ["--files", str(max(FILES * 3 // 5, 1)), "--size", "64K", "--concurrency", "16",
             "--ops", "upload,download", "--lag-samples", "0"], ["upload", "download"]),
    ("lag16", ["--files", str(FILES), "--size", "4K", "--concurrency", "16",
               "--ops", "upload", "--lag-samples", "50", "--group", "group1"], ["lag"]),
    ("lag1", ["--files", str(max(FILES * 2 // 5, 1)), "--size", "4K", "--concurrency", "1",
              "--ops", "upload", "--lag-samples", "50", "--group", "group1"], ["lag"]),
]


def chosen_series():
    """SERIES, or only those named in $SERIES (comma list of labels)."""
    wanted = os.environ.get("SERIES")
    if not wanted:
        return SERIES
    names = wanted.split(",")
    return [s for s in SERIES if s[0] in names]


def binlog_ops(store):
    """Records in a storage's binlog by op letter (C: its own uploads,
    c: files it received from its peer)."""
    sync = os.path.join(store, "data", "sync")
    counts = {}
    for name in os.listdir(sync) if os.path.isdir(sync) else []:
        if not name.startswith("binlog.") or name.endswith(".index"):
            continue
        with open(os.path.join(sync, name), "rb") as f:
            for line in f:
                parts = line.split(b" ", 2)
                if len(parts) == 3:
                    op = parts[1].decode()
                    counts[op] = counts.get(op, 0) + 1
    return counts


class Sandbox:
    def __init__(self, binary, folder, net, durable, extra):
        self.binary, self.folder, self.net = binary, folder, net
        self.proc = subprocess.Popen(
            [binary, "sandbox", "--dir", folder, "--groups", "2", "--servers", "2,1",
             "--net", net, "--http-port", "0", "--gateway-port", "0", "--durable", durable]
            + extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.conf = os.path.join(folder, "client", "client.conf")
        deadline = time.time() + 90
        while time.time() < deadline:
            if os.path.exists(self.conf):
                out = subprocess.run([binary, "monitor", self.conf], capture_output=True, text=True)
                if out.stdout.count("ACTIVE") >= 3:
                    # A fresh sandbox has just made 3 × 65,536 folders:
                    # let their write-back finish before measuring.
                    os.sync()
                    return
            time.sleep(0.5)
        self.stop()
        sys.exit(f"{binary}: the sandbox in {folder} did not become ACTIVE")

    def caught_up(self, timeout=60):
        """Waits until each server of group1 recorded every upload of the
        other as received."""
        a, b = (os.path.join(self.folder, n) for n in ("group1-1", "group1-2"))
        deadline = time.time() + timeout
        while time.time() < deadline:
            ca, cb = binlog_ops(a), binlog_ops(b)
            if ca.get("C", 0) == cb.get("c", 0) and cb.get("C", 0) == ca.get("c", 0):
                return
            time.sleep(0.2)
        print(f"warning: group1 did not catch up within {timeout} s", file=sys.stderr)

    def rss_kib(self):
        out = subprocess.run(["pgrep", "-f", f"storage {self.folder}/"], capture_output=True, text=True)
        rss = []
        for pid in out.stdout.split():
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss.append(int(line.split()[1]))
        return rss

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def one_round(label, binary, folder, net, results):
    side = "NEW" if label == "new" else "BASE"
    extra = os.environ.get(f"{side}_SANDBOX_ARGS", "").split()
    durable = os.environ.get(f"{side}_DURABLE", DURABLE)
    sb = Sandbox(binary, folder, net, durable, extra)
    try:
        for name, args, figures in chosen_series():
            sb.caught_up()
            cmd = [binary, "bench", sb.conf, "--json"] + args
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                # The bench failed: its report says which operations and why.
                print(f"{' '.join(cmd)} exited with {out.returncode} in {folder}:\n"
                      f"{out.stdout}{out.stderr}", file=sys.stderr)
                raise SystemExit(1)
            r = json.loads(out.stdout)
            for ph in r["phases"]:
                if ph["op"] in figures:
                    results.setdefault((label, f"{name} {ph['op']} ops/s"), []).append(ph["ops_per_sec"])
            # Builds whose bench has the check (it runs by default).
            after = (r.get("all_replicated") or {}).get("ms_after_upload")
            if after is not None:
                results.setdefault((label, f"{name} all replicated, ms after upload"), []).append(after)
            if "lag" in figures and r["replication_lag"]["samples"]:
                ms = r["replication_lag"]["ms"]
                results.setdefault((label, f"{name} lag p50 ms"), []).append(ms["p50"])
                results.setdefault((label, f"{name} lag p99 ms"), []).append(ms["p99"])
        sb.caught_up()
        for i, kib in enumerate(sorted(sb.rss_kib())):
            results.setdefault((label, f"storage RSS KiB #{i + 1}"), []).append(kib)
    finally:
        sb.stop()


def main():
    builds = [("new", os.environ.get("FDFS_BIN", "target/release/fdfs"))]
    if os.environ.get("FDFS_BASE"):
        builds.append(("base", os.environ["FDFS_BASE"]))
    top = tempfile.mkdtemp(prefix="fdfs-cluster-bench.", dir=os.environ.get("BENCH_DIR"))
    results = {}
    # ext4 without a journal (this machine's) skips inodes freed in the last
    # 60 s, 360 s while their inode table block is dirty, when it allocates
    # new ones, reading inode tables to find them: uploads in the minutes
    # after a mass delete (an earlier run's folders) ran up to 2x slower
    # (perf: recently_deleted). Hence no folder is deleted before the end,
    # and a pause first; SETTLE_SECS=0 when nothing was deleted lately.
    time.sleep(int(os.environ.get("SETTLE_SECS", "400")))
    try:
        for rnd in range(ROUNDS):
            order = builds if rnd % 2 == 0 else list(reversed(builds))
            for label, binary in order:
                net = "127.0.71" if label == "new" else "127.0.72"
                folder = os.path.join(top, f"{label}-{rnd}")
                load = os.getloadavg()[0]
                print(f"round {rnd + 1}/{ROUNDS}: {label} ({binary}), load {load:.1f}", file=sys.stderr)
                one_round(label, binary, folder, net, results)
    finally:
        report(builds, results)
        # Each sandbox holds ~200,000 sub-directories: deleting them takes
        # minutes, so the figures are printed first.
        if not os.environ.get("KEEP"):
            subprocess.run(["rm", "-rf", top], check=False)


def report(builds, results):
    figures = []
    for (_, fig) in results:
        if fig not in figures:
            figures.append(fig)
    labels = [l for l, _ in builds]
    durable = "/".join(dict.fromkeys(os.environ.get(f"{l.upper()}_DURABLE", DURABLE) for l in labels))
    print(f"| figure ({ROUNDS} rounds, durable={durable}, medians) | " + " | ".join(labels)
          + (" | new / base |" if len(labels) == 2 else " |"))
    print("|---" * (len(labels) + 1 + (len(labels) == 2)) + "|")
    for fig in figures:
        meds = [statistics.median(results[(l, fig)]) if (l, fig) in results else None for l in labels]
        cells = [f"{m:,.1f}" if m is not None else "—" for m in meds]
        row = f"| {fig} | " + " | ".join(cells)
        if len(labels) == 2 and all(m for m in meds):
            row += f" | {meds[0] / meds[1]:.2f}"
        print(row + " |")
    # Every round's value, in round order, for judging the spread.
    for fig in figures:
        per = [f"{l}: " + ", ".join(f"{v:,.1f}" for v in results.get((l, fig), [])) for l in labels]
        print(f"  {fig}: " + "; ".join(per), file=sys.stderr)


if __name__ == "__main__":
    main()
