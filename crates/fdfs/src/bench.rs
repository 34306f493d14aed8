//! `fdfs bench`: load a FastDFS-protocol cluster (ours or upstream) and
//! report throughput, latency percentiles, errors and replication lag.
//!
//! N files of S bytes are uploaded, downloaded (and checked byte by byte)
//! and deleted by C concurrent tokio tasks, each with its own
//! [`fdfs_client::Client`] (so its own connections). Every upload sends the
//! same random buffer: memory stays at one S-sized buffer, never N×S.
//!
//! Replication lag: for K sampled uploads, the time from the upload's ack
//! to the file being readable on a peer of its group, found with
//! QUERY_FETCH_ALL (105, or SERVER_LIST_STORAGE 92 as a fallback) and
//! polled with QUERY_FILE_INFO (22) about every millisecond. Only the public
//! protocol is used, so the same command measures upstream FastDFS.
//!
//! All replicated: after the upload phase (and before any other), every
//! upload is looked up with QUERY_FILE_INFO on each other ACTIVE server of
//! its group until all of them answer; the figure is the time from the end
//! of the upload phase to the last answer. It shows whether replication
//! keeps up with the upload rate, and the next phase then does not compete
//! with replication.
//!
//! Ping (`--ops ping`): ACTIVE_TEST to a tracker, then to an ACTIVE
//! storage, round robin: the four messages of a download with no work at
//! either end. Its rate is the ceiling a download could reach with these
//! processes on this machine, the kernel's cost per message included.
//!
//! The bench never asserts figures; it only measures and prints them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fdfs_client::{Client, ClientOptions, UploadOptions};
use fdfs_proto::cmd::storage as scmd;
use fdfs_proto::file_id::SourceServer;
use fdfs_proto::header::{Header, HEADER_LEN};
use fdfs_proto::storage::file_info_flags;
use fdfs_proto::tracker::FileReq;
use fdfs_proto::FileId;
use rand::{Rng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How many error messages each phase keeps to print.
const KEEP_ERRORS: usize = 5;
/// ENOENT: the peer does not have the file yet.
const ENOENT: u8 = 2;

/// `fdfs bench <client.conf | --tracker host:port> [options]`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// client.conf (any file with tracker_server lines).
    #[arg(required_unless_present = "tracker")]
    pub conf: Option<PathBuf>,
    /// A tracker to use instead of a conf file (repeatable).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "conf")]
    pub tracker: Vec<String>,
    /// Number of files.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub files: u64,
    /// Size of each file: bytes, or with a K, M or G suffix (powers of 1024).
    #[arg(long, default_value = "4K", value_parser = parse_size)]
    pub size: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Phases to run, in this order: a comma list of upload, download,
    /// delete, ping. download and delete work on the files this run
    /// uploaded; ping (ACTIVE_TEST to a tracker, then to a storage: a
    /// download's round trips without its work) needs no files.
    #[arg(long, default_value = "upload,download,delete", value_parser = parse_ops)]
    pub ops: Ops,
    /// Uploads sampled for the replication lag (0 = none).
    #[arg(long, default_value_t = 50)]
    pub lag_samples: u64,
    /// Give up on a lag sample after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub lag_timeout_secs: u64,
    /// After the upload phase, wait at most this many seconds until every
    /// upload is on every server of its group, and report how long it took
    /// (0 = do not check).
    #[arg(long, default_value_t = 120)]
    pub replicated_timeout_secs: u64,
    /// Upload to this group only (else the tracker chooses).
    #[arg(long)]
    pub group: Option<String>,
    /// Threads that run the clients. One leaves the most CPU to servers on
    /// the same machine (4 KiB downloads ran 1.12x faster than with two on
    /// 2 cores); raise it against a remote cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which phases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ops {
    upload: bool,
    download: bool,
    delete: bool,
    ping: bool,
}

fn parse_ops(s: &str) -> std::result::Result<Ops, String> {
    let mut o = Ops {
        upload: false,
        download: false,
        delete: false,
        ping: false,
    };
    for p in s.split(',').map(str::trim) {
        match p {
            "upload" => o.upload = true,
            "download" => o.download = true,
            "delete" => o.delete = true,
            "ping" => o.ping = true,
            _ => {
                return Err(format!(
                    "{p:?} is not one of upload, download, delete, ping"
                ))
            }
        }
    }
    if (o.download || o.delete) && !o.upload {
        return Err("download and delete need the files of this run: include upload".into());
    }
    Ok(o)
}

/// `4096`, `4K`, `64KiB`, `512M`, `1G`, `1.5M`.
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4096, 4K, 64K, 512M)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{s:?} is not a size"));
    }
    let bytes = (v * mult as f64).round();
    if bytes > (16u64 << 30) as f64 {
        return Err(format!("{s:?} is larger than 16G"));
    }
    Ok(bytes as u64)
}

/// One phase's outcome.
#[derive(Debug)]
struct PhaseResult {
    op: &'static str,
    ok: u64,
    errors: u64,
    first_errors: Vec<String>,
    elapsed: Duration,
    bytes: u64,
    /// Latencies of the successful operations, microseconds, sorted.
    lat_us: Vec<u64>,
}

/// The replication-lag samples.
#[derive(Debug, Default)]
struct LagResult {
    /// Ack-to-readable times, microseconds, sorted.
    lag_us: Vec<u64>,
    failed: u64,
    first_errors: Vec<String>,
}

/// How long after the upload phase every upload was on every server of
/// its group.
#[derive(Debug, Default)]
struct ReplicatedResult {
    /// File copies checked (uploads times the peers of their group).
    copies: u64,
    /// From the end of the upload phase to the last copy found.
    after: Option<Duration>,
    error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Upload,
    Download,
    Delete,
    Ping,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Upload => "upload",
            Phase::Download => "download",
            Phase::Delete => "delete",
            Phase::Ping => "ping",
        }
    }
}

/// State shared by the workers of a run.
struct Shared {
    buf: Vec<u8>,
    ids: Vec<OnceLock<String>>,
    group: Option<String>,
    lag: LagSampler,
    /// The ACTIVE storages the ping phase takes turns on.
    ping_storages: OnceLock<Vec<SocketAddr>>,
}

/// Chooses and runs the replication-lag samples.
struct LagSampler {
    wanted: u64,
    stride: u64,
    claimed: AtomicUsize,
    timeout: Duration,
    /// Servers of each group (all addresses the tracker gave).
    group_servers: tokio::sync::Mutex<HashMap<String, Vec<SocketAddr>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<std::result::Result<u64, String>>>>,
}

/// Parses `host:port` tracker addresses.
fn resolve_trackers(list: &[String]) -> Result<Vec<SocketAddr>> {
    let mut v = Vec::new();
    for t in list {
        let a = t
            .to_socket_addrs()
            .with_context(|| format!("tracker {t:?} is not host:port"))?
            .next()
            .with_context(|| format!("tracker {t:?} has no address"))?;
        v.push(a);
    }
    Ok(v)
}

/// `fdfs bench`: runs and prints; exit code 1 when an operation failed.
pub fn main(args: BenchArgs) -> std::process::ExitCode {
    match run(args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fdfs bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the bench; `Ok(false)` when some operation failed.
pub fn run(args: BenchArgs) -> Result<bool> {
    let (trackers, opts) = match &args.conf {
        Some(p) => {
            let c = fdfs_conf::ClientConf::load(p)
                .with_context(|| format!("cannot load {}", p.display()))?;
            let client = Client::from_conf(&c)?;
            let opts = ClientOptions {
                connect_timeout: c.connect_timeout,
                network_timeout: c.network_timeout,
                ..ClientOptions::default()
            };
            (client.trackers().to_vec(), opts)
        }
        None => (resolve_trackers(&args.tracker)?, ClientOptions::default()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()?;
    rt.block_on(bench(args, trackers, opts))
}

async fn bench(args: BenchArgs, trackers: Vec<SocketAddr>, opts: ClientOptions) -> Result<bool> {
    let n = usize::try_from(args.files).context("--files is too large")?;
    let size = usize::try_from(args.size).context("--size is too large")?;
    let mut buf = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut buf);
    let wanted = if args.ops.upload { args.lag_samples } else { 0 };
    let shared = Arc::new(Shared {
        buf,
        ids: (0..n).map(|_| OnceLock::new()).collect(),
        group: args.group.clone(),
        ping_storages: OnceLock::new(),
        lag: LagSampler {
            wanted,
            // Spread the samples over the run.
            stride: (args.files / wanted.max(1)).max(1),
            claimed: AtomicUsize::new(0),
            timeout: Duration::from_secs(args.lag_timeout_secs),
            group_servers: tokio::sync::Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        },
    });
    let clients: Vec<Client> = (0..args.concurrency)
        .map(|_| Client::new(trackers.clone(), opts.clone()))
        .collect::<std::result::Result<_, _>>()?;

    let mut phases = Vec::new();
    let mut lag = LagResult::default();
    let mut replicated = None;
    for (on, phase) in [
        (args.ops.upload, Phase::Upload),
        (args.ops.download, Phase::Download),
        (args.ops.delete, Phase::Delete),
        (args.ops.ping, Phase::Ping),
    ] {
        if !on {
            continue;
        }
        if phase == Phase::Ping {
            let storages = active_storages(&clients[0]).await?;
            if storages.is_empty() {
                bail!("ping: the tracker lists no ACTIVE storage");
            }
            let _ = shared.ping_storages.set(storages);
        }
        phases.push(run_phase(phase, &clients, &shared, n).await);
        let ended = Instant::now();
        if phase == Phase::Upload {
            // The lag pollers finish before the next phase, which they
            // would otherwise slow down.
            lag = collect_lag(&shared.lag).await;
            if args.replicated_timeout_secs > 0 {
                let timeout = Duration::from_secs(args.replicated_timeout_secs);
                let workers = clients.len().min(16);
                replicated =
                    Some(all_replicated(&clients[0], &shared, ended, timeout, workers).await);
            }
        }
    }
    let uploaded = phases.iter().find(|p| p.op == "upload").map_or(0, |p| p.ok);

    if args.json {
        println!(
            "{}",
            json_report(
                &args,
                &trackers,
                &phases,
                &lag,
                wanted,
                uploaded,
                replicated.as_ref()
            )
        );
    } else {
        print_report(&args, &trackers, &phases, &lag, wanted, replicated.as_ref());
    }
    let replicated_ok = replicated.as_ref().is_none_or(|r| r.error.is_none());
    Ok(phases.iter().all(|p| p.errors == 0) && lag.failed == 0 && replicated_ok)
}

/// Runs one phase with every client as a worker; files are handed out by
/// an atomic counter.
async fn run_phase(
    phase: Phase,
    clients: &[Client],
    shared: &Arc<Shared>,
    n: usize,
) -> PhaseResult {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in clients {
        let (c, next, shared) = (c.clone(), next.clone(), shared.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut bytes = 0u64;
            let mut errors = 0u64;
            let mut msgs = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t0 = Instant::now();
                match one_op(phase, &c, &shared, i).await {
                    Ok(Some(b)) => {
                        lat.push(t0.elapsed().as_micros() as u64);
                        bytes += b;
                    }
                    // Nothing to do: the upload of this file had failed.
                    Ok(None) => {}
                    Err(e) => {
                        errors += 1;
                        if msgs.len() < KEEP_ERRORS {
                            // The client's errors already name their cause.
                            msgs.push(e.to_string());
                        }
                    }
                }
            }
            (lat, bytes, errors, msgs)
        });
    }
    let mut r = PhaseResult {
        op: phase.name(),
        ok: 0,
        errors: 0,
        first_errors: Vec::new(),
        elapsed: Duration::ZERO,
        bytes: 0,
        lat_us: Vec::new(),
    };
    while let Some(done) = set.join_next().await {
        match done {
            Ok((lat, bytes, errors, msgs)) => {
                r.ok += lat.len() as u64;
                r.lat_us.extend(lat);
                r.bytes += bytes;
                r.errors += errors;
                for m in msgs {
                    if r.first_errors.len() < KEEP_ERRORS {
                        r.first_errors.push(m);
                    }
                }
            }
            Err(e) => {
                r.errors += 1;
                r.first_errors.push(format!("worker failed: {e}"));
            }
        }
    }
    r.elapsed = start.elapsed();
    r.lat_us.sort_unstable();
    r
}

/// One operation on file `i`; the bytes moved, or `None` when there is no
/// file `i` (its upload failed).
async fn one_op(phase: Phase, c: &Client, shared: &Arc<Shared>, i: usize) -> Result<Option<u64>> {
    match phase {
        Phase::Upload => {
            let mut opts = UploadOptions::new();
            if let Some(g) = &shared.group {
                opts = opts.group(g.clone());
            }
            let id = c.upload(&shared.buf, &opts).await?;
            let acked = Instant::now();
            let text = id.to_string();
            let _ = shared.ids[i].set(text);
            maybe_sample_lag(c, shared, i, id, acked).await;
            Ok(Some(shared.buf.len() as u64))
        }
        Phase::Download => {
            let Some(id) = shared.ids[i].get() else {
                return Ok(None);
            };
            let mut check = Verify {
                expect: &shared.buf,
                pos: 0,
                mismatch: false,
            };
            let got = c.download_to_writer(id, 0, 0, &mut check).await?;
            if check.mismatch || got != shared.buf.len() as u64 {
                bail!(
                    "{id}: downloaded {got} bytes that differ from the {} uploaded",
                    shared.buf.len()
                );
            }
            Ok(Some(got))
        }
        Phase::Delete => {
            let Some(id) = shared.ids[i].get() else {
                return Ok(None);
            };
            c.delete(id).await?;
            Ok(Some(0))
        }
        Phase::Ping => {
            let trackers = c.trackers();
            c.active_test(trackers[i % trackers.len()]).await?;
            let storages = shared.ping_storages.get().map_or(&[][..], Vec::as_slice);
            if let Some(s) = storages.get(i % storages.len().max(1)) {
                c.active_test(*s).await?;
            }
            Ok(Some(0))
        }
    }
}

/// Every ACTIVE storage of every group, as the tracker lists them.
async fn active_storages(c: &Client) -> Result<Vec<SocketAddr>> {
    let mut all = Vec::new();
    for g in c.list_groups().await? {
        all.extend(active_in_group(c, &g.group_name).await?);
    }
    Ok(all)
}

/// The ACTIVE storages of `group` (SERVER_LIST_STORAGE 92).
async fn active_in_group(c: &Client, group: &str) -> Result<Vec<SocketAddr>> {
    let list = c.list_storages(group, None).await?;
    Ok(list
        .into_iter()
        .filter(|s| s.status == fdfs_proto::server::status::ACTIVE)
        .filter_map(|s| {
            let ip = s.ip_addr.parse::<IpAddr>().ok()?;
            Some(SocketAddr::new(ip, u16::try_from(s.storage_port).ok()?))
        })
        .collect())
}

/// A writer that compares what it is given with the uploaded buffer.
struct Verify<'a> {
    expect: &'a [u8],
    pos: usize,
    mismatch: bool,
}

impl AsyncWrite for Verify<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskCx<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let end = self.pos + buf.len();
        if self.expect.get(self.pos..end) != Some(buf) {
            self.mismatch = true;
        }
        self.pos = end;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskCx<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskCx<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Starts a lag poller for upload `i` when it is a sample and its group has
/// a server other than the source.
async fn maybe_sample_lag(c: &Client, shared: &Arc<Shared>, i: usize, id: FileId, acked: Instant) {
    let lag = &shared.lag;
    let claimed = lag.claimed.load(Ordering::Relaxed) as u64;
    // Sample k is due from upload k*stride on: an upload whose group has no
    // peer leaves it due for the next one.
    if claimed >= lag.wanted || (i as u64) < claimed * lag.stride {
        return;
    }
    let peers = match group_peers(c, lag, &id).await {
        Ok(p) if !p.is_empty() => p,
        // A one-server group has no replication to measure.
        _ => return,
    };
    // One upload per due sample: another worker may have taken it.
    let k = claimed as usize;
    if lag
        .claimed
        .compare_exchange(k, k + 1, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let timeout = lag.timeout;
    let h = tokio::spawn(async move {
        // Poll the first peer: that is the one the tracker lists first, and
        // any peer shows the same sync path (source → each peer).
        poll_until_present(peers[0], &id, acked, timeout).await
    });
    lag.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(h);
}

/// The servers of the file's group other than its source.
async fn group_peers(c: &Client, lag: &LagSampler, id: &FileId) -> Result<Vec<SocketAddr>> {
    let group = id.group.as_str().to_owned();
    let mut cache = lag.group_servers.lock().await;
    if !cache.contains_key(&group) {
        let mut all = c.query_fetch_all(&id.to_string()).await.unwrap_or_default();
        // 105 may list only servers that already have the file: ask for the
        // whole group too (92), keeping the ACTIVE ones.
        if let Ok(list) = active_in_group(c, &group).await {
            for a in list {
                if !all.contains(&a) {
                    all.push(a);
                }
            }
        }
        cache.insert(group.clone(), all);
    }
    let all = &cache[&group];
    let source: Option<IpAddr> = match id.logic.info.source {
        SourceServer::Ip(ip) => Some(IpAddr::V4(ip)),
        // A numeric storage id: without the id table, the source cannot be
        // told apart; measuring needs the address form.
        SourceServer::Id(_) => None,
    };
    Ok(match source {
        Some(src) => all.iter().copied().filter(|a| a.ip() != src).collect(),
        None => Vec::new(),
    })
}

/// Polls `peer` with QUERY_FILE_INFO until it knows the file; the time
/// since `acked` in microseconds.
async fn poll_until_present(
    peer: SocketAddr,
    id: &FileId,
    acked: Instant,
    timeout: Duration,
) -> std::result::Result<u64, String> {
    // A small random gap first, so samples do not all poll in step.
    let gap = Duration::from_micros(rand::thread_rng().gen_range(0..1000));
    tokio::time::sleep(gap).await;
    let mut conns = HashMap::new();
    wait_present(&mut conns, peer, id, acked + timeout).await?;
    Ok(acked.elapsed().as_micros() as u64)
}

/// Asks `peer` about the file about every millisecond until it answers 0,
/// reusing (and, after an error, replacing) the connection in `conns`.
async fn wait_present(
    conns: &mut HashMap<SocketAddr, tokio::net::TcpStream>,
    peer: SocketAddr,
    id: &FileId,
    deadline: Instant,
) -> std::result::Result<(), String> {
    let mut req = Vec::new();
    FileReq {
        group: id.group.clone(),
        filename: id.logic.clone(),
    }
    .encode(&mut req);
    // No CRC (cheap on the server) and no "not found" log line per poll.
    let flags = file_info_flags::NO_CRC | file_info_flags::QUIET;
    let mut msg = Header::new(scmd::QUERY_FILE_INFO, flags, req.len() as u64)
        .encode()
        .to_vec();
    msg.extend_from_slice(&req);
    loop {
        // A peer that never answers must not hold the wait past `deadline`.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{id} still not readable on {peer}"));
        }
        let s = match conns.entry(peer) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let s = tokio::time::timeout(left, tokio::net::TcpStream::connect(peer))
                    .await
                    .map_err(|_| format!("connect {peer}: timed out"))?
                    .map_err(|e| format!("connect {peer}: {e}"))?;
                let _ = s.set_nodelay(true);
                v.insert(s)
            }
        };
        let Ok(answer) = tokio::time::timeout(left, query_once(s, &msg)).await else {
            return Err(format!("{peer} did not answer QUERY_FILE_INFO about {id}"));
        };
        match answer {
            Ok(0) => return Ok(()),
            Ok(ENOENT) => {}
            Ok(st) => {
                return Err(format!(
                    "{peer} answered QUERY_FILE_INFO with status {st} ({})",
                    fdfs_proto::errno::describe(st).0
                ))
            }
            // The peer may close idle or failed connections: reconnect.
            Err(_) => {
                conns.remove(&peer);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until every upload of the run is readable on every other server
/// of its group. `workers` tasks walk the uploads in upload order, each
/// with its own connections.
async fn all_replicated(
    c: &Client,
    shared: &Arc<Shared>,
    upload_ended: Instant,
    timeout: Duration,
    workers: usize,
) -> ReplicatedResult {
    let mut copies: Vec<(FileId, SocketAddr)> = Vec::new();
    for text in shared.ids.iter().filter_map(|i| i.get()) {
        let Ok(id) = FileId::parse(text) else {
            continue;
        };
        let peers = group_peers(c, &shared.lag, &id).await.unwrap_or_default();
        copies.extend(peers.into_iter().map(|p| (id.clone(), p)));
    }
    let copies = Arc::new(copies);
    let deadline = upload_ended + timeout;
    let workers = workers.max(1);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let copies = copies.clone();
        set.spawn(async move {
            let mut conns = HashMap::new();
            for (id, peer) in copies.iter().skip(w).step_by(workers) {
                wait_present(&mut conns, *peer, id, deadline).await?;
            }
            Ok::<(), String>(())
        });
    }
    let mut error = None;
    while let Some(done) = set.join_next().await {
        let r = done.unwrap_or_else(|e| Err(format!("replication checker failed: {e}")));
        if let (Err(e), None) = (r, &error) {
            error = Some(e);
        }
    }
    ReplicatedResult {
        copies: copies.len() as u64,
        after: error.is_none().then(|| upload_ended.elapsed()),
        error,
    }
}

/// Sends one request and reads the reply; the reply's status.
async fn query_once(s: &mut tokio::net::TcpStream, msg: &[u8]) -> std::io::Result<u8> {
    s.write_all(msg).await?;
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).await?;
    let h = Header::decode(&h, 1 << 16)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut body = vec![0u8; h.pkg_len as usize];
    s.read_exact(&mut body).await?;
    Ok(h.status)
}

async fn collect_lag(lag: &LagSampler) -> LagResult {
    let tasks = std::mem::take(&mut *lag.tasks.lock().unwrap_or_else(|e| e.into_inner()));
    let mut r = LagResult::default();
    for t in tasks {
        let res = t
            .await
            .unwrap_or_else(|e| Err(format!("lag poller failed: {e}")));
        match res {
            Ok(us) => r.lag_us.push(us),
            Err(e) => {
                r.failed += 1;
                if r.first_errors.len() < KEEP_ERRORS {
                    r.first_errors.push(e);
                }
            }
        }
    }
    r.lag_us.sort_unstable();
    r
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(us: Option<u64>) -> f64 {
    us.map_or(f64::NAN, |u| u as f64 / 1000.0)
}

/// Milliseconds with two decimals, or `-` without a value.
fn ms_text(us: Option<u64>) -> String {
    us.map_or_else(|| "-".to_owned(), |u| format!("{:.2}", u as f64 / 1000.0))
}

fn per_sec(count: f64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        count / s
    } else {
        0.0
    }
}

fn print_report(
    args: &BenchArgs,
    trackers: &[SocketAddr],
    phases: &[PhaseResult],
    lag: &LagResult,
    wanted: u64,
    replicated: Option<&ReplicatedResult>,
) {
    let list: Vec<String> = trackers.iter().map(|t| t.to_string()).collect();
    println!(
        "fdfs bench: {} files of {} bytes, {} clients, tracker {}",
        args.files,
        args.size,
        args.concurrency,
        list.join(",")
    );
    println!(
        "{:<9} {:>9} {:>7} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "phase", "ok", "errors", "seconds", "ops/s", "MB/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for p in phases {
        println!(
            "{:<9} {:>9} {:>7} {:>9.2} {:>11.0} {:>9.1} {:>9} {:>9} {:>9} {:>9}",
            p.op,
            p.ok,
            p.errors,
            p.elapsed.as_secs_f64(),
            per_sec(p.ok as f64, p.elapsed),
            per_sec(p.bytes as f64, p.elapsed) / 1e6,
            ms_text(quantile(&p.lat_us, 0.50)),
            ms_text(quantile(&p.lat_us, 0.95)),
            ms_text(quantile(&p.lat_us, 0.99)),
            ms_text(p.lat_us.last().copied()),
        );
        for e in &p.first_errors {
            println!("  {} error: {e}", p.op);
        }
    }
    if wanted > 0 {
        let n = lag.lag_us.len();
        if n == 0 && lag.failed == 0 {
            println!("replication lag: no sample (no group with two ACTIVE servers got an upload)");
        } else {
            println!(
                "replication lag (ack to readable on a peer), {n} samples, {} failed: \
                 p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                lag.failed,
                ms(quantile(&lag.lag_us, 0.50)),
                ms(quantile(&lag.lag_us, 0.99)),
                ms(lag.lag_us.last().copied()),
            );
        }
        for e in &lag.first_errors {
            println!("  lag error: {e}");
        }
    }
    if let Some(r) = replicated {
        match (&r.error, r.after) {
            (Some(e), _) => println!("all replicated: not within the timeout: {e}"),
            (None, _) if r.copies == 0 => {
                println!("all replicated: nothing to check (no group with two ACTIVE servers got an upload)")
            }
            (None, Some(d)) => println!(
                "all replicated: {} copies on peers, the last {:.1} ms after the upload phase ended",
                r.copies,
                d.as_secs_f64() * 1000.0
            ),
            (None, None) => {}
        }
    }
}

/// A JSON number, or null when not finite (serde_json refuses NaN).
fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn lat_json(sorted: &[u64], keys: &[(&str, f64)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, q) in keys {
        m.insert((*k).to_owned(), num(ms(quantile(sorted, *q))));
    }
    m.insert("max".into(), num(ms(sorted.last().copied())));
    serde_json::Value::Object(m)
}

fn json_report(
    args: &BenchArgs,
    trackers: &[SocketAddr],
    phases: &[PhaseResult],
    lag: &LagResult,
    wanted: u64,
    uploaded: u64,
    replicated: Option<&ReplicatedResult>,
) -> serde_json::Value {
    let phases: Vec<serde_json::Value> = phases
        .iter()
        .map(|p| {
            serde_json::json!({
                "op": p.op,
                "ok": p.ok,
                "errors": p.errors,
                "first_errors": p.first_errors,
                "seconds": num(p.elapsed.as_secs_f64()),
                "ops_per_sec": num(per_sec(p.ok as f64, p.elapsed)),
                "mb_per_sec": num(per_sec(p.bytes as f64, p.elapsed) / 1e6),
                "latency_ms": lat_json(&p.lat_us, &[("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]),
            })
        })
        .collect();
    serde_json::json!({
        "trackers": trackers.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "files": args.files,
        "size": args.size,
        "concurrency": args.concurrency,
        "uploaded": uploaded,
        "phases": phases,
        "replication_lag": {
            "wanted": wanted,
            "samples": lag.lag_us.len(),
            "failed": lag.failed,
            "first_errors": lag.first_errors,
            "ms": lat_json(&lag.lag_us, &[("p50", 0.5), ("p99", 0.99)]),
        },
        "all_replicated": replicated.map(|r| serde_json::json!({
            "copies": r.copies,
            "ms_after_upload": r.after.map(|d| num(d.as_secs_f64() * 1000.0)),
            "error": r.error,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("abc").is_err());
        assert!(parse_size("-1K").is_err());
        assert!(parse_size("17G").is_err());
    }

    #[test]
    fn ops_need_upload() {
        assert_eq!(
            parse_ops("upload,delete"),
            Ok(Ops {
                upload: true,
                download: false,
                delete: true,
                ping: false
            })
        );
        assert!(parse_ops("download").is_err());
        assert_eq!(parse_ops("ping").map(|o| o.ping), Ok(true));
        assert!(parse_ops("upload,list").is_err());
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&[7], 0.5), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[tokio::test]
    async fn verify_writer_spots_a_changed_byte() {
        let data = b"hello world".to_vec();
        let mut ok = Verify {
            expect: &data,
            pos: 0,
            mismatch: false,
        };
        ok.write_all(b"hello ").await.unwrap();
        ok.write_all(b"world").await.unwrap();
        assert!(!ok.mismatch && ok.pos == data.len());
        let mut bad = Verify {
            expect: &data,
            pos: 0,
            mismatch: false,
        };
        bad.write_all(b"hello World").await.unwrap();
        assert!(bad.mismatch);
        let mut long = Verify {
            expect: &data,
            pos: 0,
            mismatch: false,
        };
        long.write_all(b"hello world!").await.unwrap();
        assert!(long.mismatch);
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_ends_the_wait_at_its_deadline() {
        // Accepts and reads, never replies.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = l.local_addr().unwrap();
        let mute = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let id = FileId::parse("group1/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip").unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let e = wait_present(&mut HashMap::new(), peer, &id, deadline)
            .await
            .unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        mute.abort();
    }
}
