#!/usr/bin/env python3
"""Seeds the fuzz corpora from the repository's own samples.

frame_decode: every captured message of testdata/golden/wire (header +
captured body) and every golden disk text sample line.
conf_parse: the guide's .conf files under crates/conf/tests/data.
Run from fuzz/: python3 make_seeds.py
"""
import glob
import json
import os
import shutil

root = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(root)
frames = os.path.join(root, "corpus", "frame_decode")
confs = os.path.join(root, "corpus", "conf_parse")
os.makedirs(frames, exist_ok=True)
os.makedirs(confs, exist_ok=True)

n = 0
for path in sorted(glob.glob(os.path.join(repo, "testdata/golden/wire/*.jsonl"))):
    for line in open(path):
        r = json.loads(line)
        if "cmd" not in r:
            continue
        data = bytes.fromhex(r["header_hex"]) + bytes.fromhex(r["body_hex"])
        name = "%s_%d" % (r["scenario"], r["seq"])
        with open(os.path.join(frames, name), "wb") as f:
            f.write(data)
        n += 1
for path in glob.glob(os.path.join(repo, "testdata/golden/disk/*")):
    if path.endswith(".txt") or path.endswith("-m"):
        shutil.copy(path, os.path.join(frames, "disk_" + os.path.basename(path)))
        n += 1
m = 0
for path in glob.glob(os.path.join(repo, "crates/conf/tests/data/**/*.conf"), recursive=True):
    shutil.copy(path, os.path.join(confs, os.path.basename(path)))
    m += 1
print("frame_decode: %d seeds, conf_parse: %d seeds" % (n, m))
