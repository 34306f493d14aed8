#!/usr/bin/env python3
"""Interoperability check: a third-party Python FastDFS client against our cluster.

Two clients from PyPI, both installed by .ci/run with pinned versions:

  --library py3fdfs         py3Fdfs 2.2.0 (module fdfs_client), the Python 3 port of
                            the classic fdfs_client-py: 15-byte IP fields (40-byte
                            store reply), what our tracker answers by default.
  --library fastdfs-client  fastdfs-client 1.3.0 (module fastdfs_client), "protocol
                            V6.12": 45-byte IP fields (70-byte store reply); needs
                            `response_ip_addr_size = IPv6` in tracker.conf.

Usage:
    python_client.py [--library L] --conf client.conf   # an existing client.conf
    python_client.py [--library L] --tracker HOST:PORT  # writes a client.conf itself
    ... [--list GROUP=IP:PORT,IP:PORT]                  # also the listings

It uploads a buffer, downloads it whole and by ranges, sets (overwrite, then
merge) and gets metadata, uploads an appender file and appends to it twice,
deletes both files and checks that they are gone. Every result is compared
byte by byte; the first mismatch exits with status 1. Exit status 2 means the
client library is missing or the arguments are wrong.

With --list it also lists the groups and storages through the library's public
listing calls (list_all_groups, list_one_group, list_servers) and checks that
the group and each storage given are there, ACTIVE, with their ports. Both
libraries parse the V6.10 records (105-byte groups, 612-byte storages with
16-byte IP fields, even fastdfs-client): the tracker must run with
`stat_layout = 6.10` (our tracker.conf key).

Both libraries have Python 3 str/bytes bugs in some calls. They are worked
around on the client side only (never by relaxing a check), using each
library's own lower-level classes:
  * py3Fdfs: Fdfs_client.download_to_buffer() leaves its offset/length unset
    for non-zero values, so ranges go through Storage_client directly;
    Fdfs_client.get_meta_data() calls .encode() on a bytes name;
    list_one_group() and list_servers() pack the group name as given (so it
    is passed as bytes), and list_servers() without a storage IP packs a str,
    so each storage is listed by its IP.
  * fastdfs-client: append_by_buffer() and set_meta_data() pass a str file
    name where struct needs bytes.
  * both: storage_set_metadata() packs the op flag and the packed metadata as
    str (the flag is passed as b"O"/b"M", the library's own
    fdfs_pack_metadata() result is encoded), and fdfs_unpack_metadata()
    splits bytes with str separators (the reply is decoded first).
"""

import argparse
import http.client
import importlib
import os
import sys
import tempfile

PIP = {"py3fdfs": "py3Fdfs==2.2.0", "fastdfs-client": "fastdfs-client==1.3.0"}
MODULE = {"py3fdfs": "fdfs_client", "fastdfs-client": "fastdfs_client"}

CHECKS = 0


def fail(what):
    print(f"MISMATCH: {what}", file=sys.stderr)
    sys.exit(1)


def check(cond, what):
    global CHECKS
    if not cond:
        fail(what)
    CHECKS += 1


def same_bytes(got, want, what):
    if got != want:
        first = next(
            (i for i, (a, b) in enumerate(zip(got, want)) if a != b),
            min(len(got), len(want)),
        )
        fail(f"{what}: {len(got)} bytes vs {len(want)} expected, first difference at byte {first}")
    check(True, what)


def as_text(v):
    return v.decode() if isinstance(v, bytes) else v


def patch_metadata_codec(storage_module):
    """Makes the library's own metadata (un)packing work on Python 3."""
    pack = storage_module.fdfs_pack_metadata
    unpack = storage_module.fdfs_unpack_metadata
    storage_module.fdfs_pack_metadata = lambda meta: pack(meta).encode()
    storage_module.fdfs_unpack_metadata = lambda raw: unpack(raw.decode())


class Listings:
    """The listing calls, the same in both libraries (`self.c` is the
    library's client): group names and IPs go in as bytes."""

    def list_groups(self):
        return self.c.list_all_groups()

    def list_group(self, group):
        return self.c.list_one_group(group.encode())

    def list_server(self, group, ip):
        return self.c.list_servers(group.encode(), ip.encode())


class Py3Fdfs(Listings):
    """py3Fdfs 2.2.0: file ids and names are bytes."""

    def __init__(self, conf):
        import fdfs_client.storage_client as sc
        from fdfs_client.client import Fdfs_client, get_tracker_conf
        from fdfs_client.tracker_client import Tracker_client

        patch_metadata_codec(sc)
        self.Storage, self.Tracker = sc.Storage_client, Tracker_client
        self.c = Fdfs_client(get_tracker_conf(conf))

    def _storage(self, file_id, update):
        group, name = as_text(file_id).split("/", 1)
        tc = self.Tracker(self.c.tracker_pool)
        query = tc.tracker_query_storage_update if update else tc.tracker_query_storage_fetch
        serv = query(group.encode(), name.encode())
        return tc, serv, self.Storage(serv.ip_addr, serv.port, self.c.timeout), name

    def upload(self, data, ext, appender=False):
        f = self.c.upload_appender_by_buffer if appender else self.c.upload_by_buffer
        return f(data, ext)

    def download(self, file_id, offset=0, length=0):
        if offset == 0 and length == 0:
            return self.c.download_to_buffer(file_id)["Content"]
        tc, serv, store, name = self._storage(file_id, False)
        return store.storage_download_to_buffer(tc, serv, None, offset, length, name.encode())["Content"]

    def set_meta(self, file_id, meta, flag):
        tc, serv, store, name = self._storage(file_id, True)
        return store.storage_set_metadata(tc, serv, name.encode(), meta, flag)

    def get_meta(self, file_id):
        tc, serv, store, name = self._storage(file_id, False)
        return store.storage_get_metadata(tc, serv, name)

    def append(self, file_id, data):
        return self.c.append_by_buffer(data, file_id)

    def delete(self, file_id):
        return self.c.delete_file(file_id)


class FastdfsClient(Listings):
    """fastdfs-client 1.3.0: file ids are str; storage calls want bytes names."""

    def __init__(self, conf):
        import fastdfs_client.storage_client as sc
        from fastdfs_client import FastdfsClient as Client
        from fastdfs_client.tracker_client import TrackerClient

        patch_metadata_codec(sc)
        self.Storage, self.Tracker = sc.StorageClient, TrackerClient
        self.c = Client(conf)

    def _storage(self, file_id, update):
        group, name = as_text(file_id).split("/", 1)
        tc = self.Tracker(self.c.tracker_pool)
        query = tc.tracker_query_storage_update if update else tc.tracker_query_storage_fetch
        serv = query(group, name)
        return tc, serv, self.Storage(serv.ip_addr, serv.port, self.c.timeout), name

    def upload(self, data, ext, appender=False):
        f = self.c.upload_appender_by_buffer if appender else self.c.upload_by_buffer
        return f(data, ext)

    def download(self, file_id, offset=0, length=0):
        return self.c.download_to_buffer(as_text(file_id), offset, length)["Content"]

    def set_meta(self, file_id, meta, flag):
        tc, serv, store, name = self._storage(file_id, True)
        return store.storage_set_metadata(tc, serv, name.encode(), meta, flag)

    def get_meta(self, file_id):
        tc, serv, store, name = self._storage(file_id, False)
        return store.storage_get_metadata(tc, serv, name)

    def append(self, file_id, data):
        tc, serv, store, name = self._storage(file_id, True)
        return store.storage_append_by_buffer(tc, serv, data, name.encode())

    def delete(self, file_id):
        return self.c.delete_file(as_text(file_id))


def check_http(servers, fid, body):
    """The file through each storage's built-in HTTP, with Python's own
    http.client: whole downloads on one kept connection, a range, HEAD, a
    conditional request, and a name that is not there."""
    path = "/" + fid
    for host, port in servers:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        for _ in range(2):
            conn.request("GET", path)
            r = conn.getresponse()
            got = r.read()
            check(r.status == 200, f"HTTP GET {host}:{port}{path}: {r.status}")
            same_bytes(got, body, f"HTTP GET from {host}:{port}")
        etag = r.getheader("ETag")
        conn.request("GET", path, headers={"Range": "bytes=1000-5999"})
        r = conn.getresponse()
        got = r.read()
        check(r.status == 206, f"HTTP range: {r.status}")
        check(
            r.getheader("Content-Range") == f"bytes 1000-5999/{len(body)}",
            f"Content-Range {r.getheader('Content-Range')!r}",
        )
        same_bytes(got, body[1000:6000], "HTTP range 1000-5999")
        conn.request("HEAD", path)
        r = conn.getresponse()
        r.read()
        check(r.status == 200, f"HTTP HEAD: {r.status}")
        check(r.getheader("Content-Length") == str(len(body)), "HTTP HEAD Content-Length")
        conn.request("GET", path, headers={"If-None-Match": etag})
        r = conn.getresponse()
        check(r.status == 304 and r.read() == b"", f"HTTP If-None-Match: {r.status}")
        conn.close()
        # HTTP/1.0 without keep-alive: the server closes after the answer.
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
        conn.request("GET", path)
        r = conn.getresponse()
        same_bytes(r.read(), body, "HTTP/1.0 GET")
        conn.close()
        # Not a file name at all (a real but missing name could send the
        # storage to the source server it names).
        bad = path[: path.rindex("/") + 1] + "nothing.bin"
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("GET", bad)
        r = conn.getresponse()
        r.read()
        check(r.status == 400, f"HTTP GET of a name that is not one: {r.status}")
        conn.close()


def run(lib, http=None):
    # Every byte value, not a repeating short pattern, across several reads.
    body = bytes(((i * 31) + (i // 251)) & 0xFF for i in range(300_000))

    # Upload a buffer.
    r = lib.upload(body, "bin")
    check(r is not None, "upload_by_buffer returned nothing")
    check(r["Status"] == "Upload successed.", f"upload status {r['Status']!r}")
    fid = r["Remote file_id"]
    fid_text = as_text(fid)
    check(fid_text.startswith(as_text(r["Group name"]) + "/M00/"), f"file id {fid_text!r}")
    check(fid_text.endswith(".bin"), f"file id {fid_text!r} lacks the .bin extension")

    # Whole download, then ranges: middle, tail (length 0 = to the end), one byte.
    same_bytes(lib.download(fid), body, "whole download")
    same_bytes(lib.download(fid, 1000, 5000), body[1000:6000], "range 1000+5000")
    same_bytes(lib.download(fid, 299_000, 0), body[299_000:], "range 299000 to end")
    same_bytes(lib.download(fid, 123_457, 1), body[123_457:123_458], "range of one byte")

    # Metadata: overwrite, then merge.
    check(lib.set_meta(fid, {"width": "160", "author": "bob"}, b"O") == 0, "set metadata (overwrite)")
    meta = lib.get_meta(fid)
    check(meta == {"author": "bob", "width": "160"}, f"metadata after overwrite: {meta!r}")
    check(lib.set_meta(fid, {"width": "320", "color": "red"}, b"M") == 0, "set metadata (merge)")
    meta = lib.get_meta(fid)
    check(
        meta == {"author": "bob", "color": "red", "width": "320"},
        f"metadata after merge: {meta!r}",
    )

    # Appender file: upload, append twice, read back whole and a range.
    a = lib.upload(b"part1-", "log", appender=True)
    check(a is not None and a["Status"] == "Upload successed.", f"appender upload {a!r}")
    aid = a["Remote file_id"]
    for part in (b"part2-", body[:70_000]):
        res = lib.append(aid, part)
        check(res["Status"] == "Append file successed.", f"append: {res!r}")
    want = b"part1-part2-" + body[:70_000]
    same_bytes(lib.download(aid), want, "appender after two appends")
    same_bytes(lib.download(aid, 6, 6), b"part2-", "appender range")

    if http:
        check_http(http, fid_text, body)

    # Delete both; a download afterwards must fail with ENOENT.
    for f in (fid, aid):
        res = lib.delete(f)
        check(res[0] == "Delete file successed.", f"delete {as_text(f)}: {res!r}")
        try:
            lib.download(f)
        except Exception as e:  # the libraries raise DataError with the status
            check("Error: 2 " in str(e), f"error after delete: {e}")
        else:
            fail(f"{as_text(f)} still downloads after delete")


ACTIVE = 7


def run_listings(lib, group, storages):
    """Lists through the library; `storages` = [(ip, port)] of `group`."""
    # A group's port is its first member's (ours may differ per server).
    ports = {port for _, port in storages}

    r = lib.list_groups()
    check(int(r["Groups count"]) == 1, f"groups count {r['Groups count']!r}")
    check(len(r["Groups"]) == 1, f"groups {r['Groups']!r}")
    one = lib.list_group(group)
    for g in (r["Groups"][0], one):
        check(as_text(g.group_name) == group, f"group name {g.group_name!r}")
        check(g.count == len(storages), f"storage count {g.count} (want {len(storages)})")
        check(g.active_count == len(storages), f"active count {g.active_count}")
        check(g.storage_port in ports, f"group storage port {g.storage_port} (want one of {ports})")
        check(g.store_path_count == 1, f"store path count {g.store_path_count}")
    try:
        lib.list_group("nogroup")
    except Exception as e:  # DataError with the status, as for downloads
        check("Error: 2" in str(e), f"listing an unknown group: {e}")
    else:
        fail("listing an unknown group succeeded")

    for ip, sport in storages:
        r = lib.list_server(group, ip)
        check(as_text(r["Group name"]) == group, f"list_servers group {r['Group name']!r}")
        check(len(r["Servers"]) == 1, f"list_servers {ip}: {len(r['Servers'])} servers")
        s = r["Servers"][0]
        check(as_text(s.ip_addr) == ip, f"storage ip {s.ip_addr!r} (want {ip})")
        check(s.status == ACTIVE, f"storage {ip} status {s.status}")
        check(s.storage_port == sport, f"storage {ip} port {s.storage_port} (want {sport})")
        check(as_text(s.version) != "", f"storage {ip} has no version")
        check(s.store_path_count == 1, f"storage {ip} store path count {s.store_path_count}")


def parse_list_arg(text):
    """`group1=127.0.0.11:23000,127.0.0.12:23000` → ("group1", [(ip, port)])."""
    group, _, rest = text.partition("=")
    storages = []
    for item in filter(None, rest.split(",")):
        ip, _, port = item.rpartition(":")
        storages.append((ip, int(port)))
    if not group or not storages:
        raise ValueError(text)
    return group, storages


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", choices=sorted(PIP), default="py3fdfs")
    ap.add_argument("--conf", help="client.conf with tracker_server")
    ap.add_argument("--tracker", help="HOST:PORT of a tracker (a client.conf is written)")
    ap.add_argument(
        "--http",
        metavar="IP:PORT,...",
        help="also read the file through these storages' HTTP",
    )
    ap.add_argument(
        "--list",
        metavar="GROUP=IP:PORT,...",
        help="also check the listings: the group and its storages (needs stat_layout = 6.10)",
    )
    args = ap.parse_args()
    if bool(args.conf) == bool(args.tracker):
        ap.print_usage(sys.stderr)
        print("python_client.py: give exactly one of --conf and --tracker", file=sys.stderr)
        sys.exit(2)
    listing = None
    if args.list:
        try:
            listing = parse_list_arg(args.list)
        except ValueError:
            print(f"python_client.py: bad --list {args.list!r}", file=sys.stderr)
            sys.exit(2)
    try:
        importlib.import_module(MODULE[args.library])
    except ImportError as e:
        print(
            f"python_client.py: cannot import {MODULE[args.library]} ({e}); "
            f"install it with: python3 -m pip install {PIP[args.library]}",
            file=sys.stderr,
        )
        sys.exit(2)

    with tempfile.TemporaryDirectory(prefix="fdfs-py-interop-") as tmp:
        conf = args.conf
        if args.tracker:
            conf = os.path.join(tmp, "client.conf")
            with open(conf, "w") as f:
                f.write(
                    f"connect_timeout = 10\nnetwork_timeout = 30\nbase_path = {tmp}\n"
                    f"tracker_server = {args.tracker}\n"
                )
        lib = Py3Fdfs(conf) if args.library == "py3fdfs" else FastdfsClient(conf)
        http_servers = []
        if args.http:
            for item in args.http.split(","):
                host, _, port = item.rpartition(":")
                http_servers.append((host, int(port)))
        run(lib, http_servers)
        if listing:
            run_listings(lib, *listing)
    print(f"python interop ({PIP[args.library]}): {CHECKS} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
