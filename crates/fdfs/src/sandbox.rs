//! `fdfs sandbox`: a whole local cluster from one command.
//!
//! Writes a tracker.conf, one storage.conf per server and a client.conf
//! into the sandbox folder (so users can read and reuse them), starts each
//! server as a child process of this binary (`fdfs tracker|storage <conf>
//! start --foreground`), waits until the tracker sees every storage ACTIVE,
//! prints the addresses and a ready-to-paste upload command, and on Ctrl-C
//! or SIGTERM stops everything. The data stays for the next start.
//!
//! The sandbox holds no server logic: it only writes files, starts and
//! stops processes, and asks the tracker for its state.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fdfs_client::{Client, ClientOptions};

/// Storage status the tracker reports for a server that takes uploads.
const ACTIVE: u8 = fdfs_proto::server::status::ACTIVE;

/// What `fdfs sandbox` starts. The flags only shape a new sandbox: an
/// existing one is started again as its .conf files say (edits survive).
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Folder for configuration, data and logs (created if missing).
    #[arg(long, default_value = "sandbox")]
    pub dir: PathBuf,
    /// Number of groups (group1, group2, ...).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub groups: u8,
    /// Storage servers in each group: one number for every group, or one
    /// per group separated by commas (e.g. `2,1`). At most 9 each.
    #[arg(long, default_value = "2", value_parser = parse_servers)]
    pub servers: Servers,
    /// First three octets of the loopback addresses: the tracker gets
    /// `<net>.1`, server s of group g gets `<net>.<g><s>`.
    #[arg(long, default_value = "127.0.0", value_parser = parse_net)]
    pub net: String,
    /// Tracker port.
    #[arg(long, default_value_t = 22122)]
    pub tracker_port: u16,
    /// Storage port (each server has its own address, so they share it).
    #[arg(long, default_value_t = 23000)]
    pub storage_port: u16,
    /// Storage HTTP port written as `http.server_port` (0 = off).
    #[arg(long, default_value_t = 8888)]
    pub http_port: u16,
    /// `metrics_port` of the tracker and every storage, each on its own
    /// address: `/metrics` (Prometheus) and `/status` (JSON). 0 = off.
    #[arg(long, default_value_t = 9122)]
    pub metrics_port: u16,
    /// Port of the HTTP gateway on the tracker's address (0 = no gateway;
    /// also none when the storage HTTP is off).
    #[arg(long, default_value_t = 8000)]
    pub gateway_port: u16,
    /// `durable` of every storage.conf: fsync before acknowledging.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub durable: bool,
    /// `durable_sync` of every storage.conf: a write-ahead `journal`, or
    /// `fsync` each file, or one `syncfs` per batch of uploads (see
    /// docs/deploy.md).
    #[arg(long, default_value = "journal", value_parser = ["fsync", "syncfs", "journal"])]
    pub durable_sync: String,
    /// `use_trunk_file` of tracker.conf: pack small files into trunk files
    /// (a new sandbox folder only; edit tracker.conf to change an old one).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub use_trunk_file: bool,
    /// `subdir_count_per_path` of every storage.conf.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub subdirs: u16,
    /// How long to wait for the storages to become ACTIVE.
    #[arg(long, default_value_t = 60)]
    pub start_timeout_secs: u64,
    /// After this many seconds, one ACTIVE server per group is enough to
    /// start (the others are listed as not ACTIVE yet).
    #[arg(long, default_value_t = 15)]
    pub settle_secs: u64,
}

/// Servers per group, as given to `--servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Servers(Vec<u8>);

impl Servers {
    /// Servers of group `g` (1-based): the last number repeats.
    fn of(&self, g: u8) -> u8 {
        let i = usize::from(g - 1).min(self.0.len() - 1);
        self.0[i]
    }
}

fn parse_servers(s: &str) -> std::result::Result<Servers, String> {
    let v = s
        .split(',')
        .map(|p| match p.trim().parse::<u8>() {
            Ok(n @ 1..=9) => Ok(n),
            _ => Err(format!("{p:?} is not a server count from 1 to 9")),
        })
        .collect::<std::result::Result<Vec<u8>, String>>()?;
    Ok(Servers(v))
}

fn parse_net(s: &str) -> std::result::Result<String, String> {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.len() == 3 && parts[0] == "127" && parts.iter().all(|p| p.parse::<u8>().is_ok());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not three octets of a loopback address (127.x.y)"
        ))
    }
}

/// One server of the sandbox: its role, addresses, folder and config file.
#[derive(Debug)]
struct Node {
    name: String,
    role: &'static str,
    addr: SocketAddr,
    group: String,
    http_port: u16,
    /// `/metrics` and `/status` on the node's address (0 = none).
    metrics_port: u16,
    dir: PathBuf,
    conf: PathBuf,
}

/// The sandbox's files and servers.
#[derive(Debug)]
struct Layout {
    tracker: Node,
    storages: Vec<Node>,
    gateway: Option<Node>,
    client_conf: PathBuf,
    reused: bool,
}

impl Layout {
    /// Every server, in start order: tracker, storages, gateway.
    fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.tracker)
            .chain(&self.storages)
            .chain(&self.gateway)
    }
}

fn mkdir_abs(p: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    p.canonicalize()
        .with_context(|| format!("cannot resolve {}", p.display()))
}

/// Writes `text` unless the file exists: a user's edits survive restarts.
fn write_conf(path: &Path, text: &str) -> Result<()> {
    if !path.exists() {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `bind_addr` + `port` of a loaded config, as a connectable address.
fn conf_addr(d: &fdfs_conf::DaemonConf, what: &Path) -> Result<SocketAddr> {
    let bind = crate::daemon::listen_addr(d)?;
    if bind.ip().is_unspecified() {
        bail!(
            "{}: the sandbox needs an explicit bind_addr to reach the server",
            what.display()
        );
    }
    Ok(bind)
}

/// The storage folders of an existing sandbox: `group<g>-<s>`, sorted.
fn existing_storages(root: &Path) -> Result<Vec<(u8, u8)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((g, s)) = name
            .strip_prefix("group")
            .and_then(|rest| rest.split_once('-'))
        else {
            continue;
        };
        if let (Ok(g), Ok(s)) = (g.parse::<u8>(), s.parse::<u8>()) {
            if root.join(name).join("storage.conf").is_file() {
                v.push((g, s));
            }
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// `work_threads` of each server: the sandbox's servers share this
/// machine's cores, and a server with more workers than its share only
/// adds thread switches (4 KiB downloads ran 1.13x faster with one worker
/// per server on 2 cores; docs/benchmarks.md, fifth run).
fn work_threads(servers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / servers).max(1)
}

fn layout(args: &SandboxArgs) -> Result<Layout> {
    let root = mkdir_abs(&args.dir)?;
    let tdir = mkdir_abs(&root.join("tracker"))?;
    let tconf = tdir.join("tracker.conf");
    let reused = tconf.exists();
    let tracker_ip = format!("{}.1", args.net);
    let wanted: Vec<(u8, u8)> = if reused {
        existing_storages(&root)?
    } else {
        (1..=args.groups)
            .flat_map(|g| (1..=args.servers.of(g)).map(move |s| (g, s)))
            .collect()
    };
    let threads = work_threads(1 + wanted.len());
    write_conf(
        &tconf,
        &format!(
            "# fastdfs-rs sandbox tracker (written by `fdfs sandbox`; edits are kept)\n\
             bind_addr = {tracker_ip}\nport = {port}\nbase_path = {base}\n\
             store_lookup = 0\nreserved_storage_space = 1%\ncheck_active_interval = 30\n\
             work_threads = {threads}\nmetrics_port = {metrics}\nuse_trunk_file = {trunk}\n",
            trunk = args.use_trunk_file,
            port = args.tracker_port,
            metrics = args.metrics_port,
            base = tdir.display()
        ),
    )?;
    let tc = fdfs_conf::TrackerConf::load(&tconf)
        .with_context(|| format!("cannot load {}", tconf.display()))?;
    let tracker_addr = conf_addr(&tc.daemon, &tconf)?;
    let tracker = Node {
        name: "tracker".into(),
        role: "tracker",
        addr: tracker_addr,
        group: String::new(),
        http_port: 0,
        metrics_port: tc.daemon.metrics_port,
        dir: tdir,
        conf: tconf,
    };

    let mut storages = Vec::new();
    for (g, s) in wanted {
        let name = format!("group{g}-{s}");
        let sdir = mkdir_abs(&root.join(&name))?;
        let conf = sdir.join("storage.conf");
        write_conf(
            &conf,
            &format!(
                "# fastdfs-rs sandbox: storage {s} of group{g} (written by `fdfs sandbox`; edits are kept)\n\
                 group_name = group{g}\nbind_addr = {net}.{g}{s}\nport = {port}\nbase_path = {base}\n\
                 store_path_count = 1\nstore_path0 = {base}\nsubdir_count_per_path = {subdirs}\n\
                 tracker_server = {tracker_addr}\nheart_beat_interval = 2\nstat_report_interval = 10\n\
                 sync_wait_msec = 10\ndurable = {durable}\ndurable_sync = {durable_sync}\n\
                 http.server_port = {http}\nwork_threads = {threads}\nmetrics_port = {metrics}\n",
                net = args.net,
                metrics = args.metrics_port,
                port = args.storage_port,
                base = sdir.display(),
                subdirs = args.subdirs,
                durable = args.durable,
                durable_sync = args.durable_sync,
                http = args.http_port,
            ),
        )?;
        let sc = fdfs_conf::StorageConf::load(&conf)
            .with_context(|| format!("cannot load {}", conf.display()))?;
        storages.push(Node {
            name,
            role: "storage",
            addr: conf_addr(&sc.daemon, &conf)?,
            group: sc.group_name.clone(),
            http_port: sc.http_server_port,
            metrics_port: sc.daemon.metrics_port,
            dir: sdir,
            conf,
        });
    }
    if storages.is_empty() {
        bail!(
            "{} has a tracker.conf but no group<g>-<s>/storage.conf: remove the folder to start afresh",
            root.display()
        );
    }

    let gateway = gateway_node(args, &root, &tracker_ip, tracker_addr)?;

    let cdir = mkdir_abs(&root.join("client"))?;
    let client_conf = cdir.join("client.conf");
    write_conf(
        &client_conf,
        &format!(
            "# fastdfs-rs sandbox client (written by `fdfs sandbox`; edits are kept)\n\
             base_path = {}\ntracker_server = {tracker_addr}\n\
             connect_timeout = 5\nnetwork_timeout = 60\n",
            cdir.display()
        ),
    )?;
    Ok(Layout {
        tracker,
        storages,
        gateway,
        client_conf,
        reused,
    })
}

/// The HTTP gateway (what the guide's caching nginx on the trackers did),
/// on the tracker's address; it learns the groups' servers from the tracker.
fn gateway_node(
    args: &SandboxArgs,
    root: &Path,
    tracker_ip: &str,
    tracker_addr: SocketAddr,
) -> Result<Option<Node>> {
    let gdir = root.join("gateway");
    let conf = gdir.join("gateway.conf");
    if !conf.exists() && (args.gateway_port == 0 || args.http_port == 0) {
        return Ok(None);
    }
    let gdir = mkdir_abs(&gdir)?;
    write_conf(
        &conf,
        &format!(
            "# fastdfs-rs sandbox gateway (written by `fdfs sandbox`; edits are kept)\n\
             bind_addr = {tracker_ip}\nport = {port}\ntracker_server = {tracker_addr}\n\
             storage_http_port = {http}\ncache_path = {cache}\ncache_max_size = 256m\n\
             purge_allow = 127.0.0.0/8\n",
            port = args.gateway_port,
            http = args.http_port,
            cache = gdir.join("cache").display(),
        ),
    )?;
    let gc = fdfs_http::gateway::GatewayConf::load(&conf)
        .with_context(|| format!("cannot load {}", conf.display()))?;
    Ok(Some(Node {
        name: "gateway".into(),
        role: "gateway",
        addr: gc.listen,
        group: String::new(),
        http_port: 0,
        metrics_port: 0,
        dir: gdir,
        conf,
    }))
}

/// Where a child's stdout and stderr go (its own logs are under base_path/logs).
fn console_log(node: &Node) -> PathBuf {
    node.dir.join("console.log")
}

fn spawn(exe: &Path, node: &Node) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(console_log(node))
        .with_context(|| format!("cannot open {}", console_log(node).display()))?;
    let err = log.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.arg(node.role).arg(&node.conf);
    if node.role != "gateway" {
        // Daemons: stay in the foreground, as children of the sandbox.
        cmd.arg("start").arg("--foreground");
    }
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        // Own process group: Ctrl-C reaches only the sandbox, which then
        // stops the servers in order (storages first, tracker last).
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to send
    // SIGTERM to the child if the sandbox dies (e.g. SIGKILL), so no server
    // outlives it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", node.name))
}

/// Waits until `addr` accepts connections, or the child exits.
fn wait_for_port(addr: SocketAddr, child: &mut Child, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(true);
        }
        if let Some(st) = child.try_wait()? {
            bail!("exited at start ({st})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}

/// SIGTERM to each child in order, waiting for each (SIGKILL after 20 s).
fn stop_all(children: &mut Vec<(String, Child)>) -> bool {
    let mut clean = true;
    // Storages were started after the tracker: stop them first.
    while let Some((name, mut c)) = children.pop() {
        if let Ok(Some(st)) = c.try_wait() {
            eprintln!("{name} had already exited ({st})");
            clean = false;
            continue;
        }
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match c.try_wait() {
                Ok(Some(st)) if st.success() => break,
                Ok(Some(st)) => {
                    eprintln!("{name} exited with {st}");
                    clean = false;
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    eprintln!("{name} did not stop within 20 s: killed");
                    let _ = c.kill();
                    let _ = c.wait();
                    clean = false;
                    break;
                }
                Err(e) => {
                    eprintln!("{name}: {e}");
                    clean = false;
                    break;
                }
            }
        }
    }
    clean
}

/// Asks the tracker until every storage of the layout is ACTIVE, or, after
/// `settle`, until each group has one (a new server of a group waits for
/// its peers to sync it, which may take longer than a user wants to wait). Returns the servers not ACTIVE yet
/// with their status name.
async fn wait_active(
    client: &Client,
    lay: &Layout,
    settle: Duration,
    timeout: Duration,
) -> Result<Vec<String>> {
    let start = Instant::now();
    let mut groups: Vec<&str> = lay.storages.iter().map(|n| n.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    loop {
        let mut pending = Vec::new();
        let mut groups_ok = true;
        for g in &groups {
            let listed = client.list_storages(g, None).await.unwrap_or_default();
            let mut any_active = false;
            for n in lay.storages.iter().filter(|n| n.group == *g) {
                let ip = n.addr.ip().to_string();
                match listed.iter().find(|s| s.ip_addr == ip) {
                    Some(s) if s.status == ACTIVE => any_active = true,
                    Some(s) => pending.push(format!("{} ({})", n.name, status_name(s.status))),
                    None => pending.push(format!("{} (not joined)", n.name)),
                }
            }
            // ACTIVE is not enough: the tracker also needs the group's
            // disk space (from the storage's reports) to choose it.
            if any_active && client.query_store(Some(g)).await.is_err() {
                pending.push(format!("{g} (not writable yet)"));
                any_active = false;
            }
            groups_ok &= any_active;
        }
        if pending.is_empty() || (groups_ok && start.elapsed() >= settle) {
            return Ok(pending);
        }
        if start.elapsed() >= timeout {
            bail!(
                "not ACTIVE on the tracker after {} s: {}",
                timeout.as_secs(),
                pending.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn status_name(s: u8) -> &'static str {
    use fdfs_proto::server::status as st;
    match s {
        st::INIT => "INIT",
        st::WAIT_SYNC => "WAIT_SYNC",
        st::SYNCING => "SYNCING",
        st::IP_CHANGED => "IP_CHANGED",
        st::DELETED => "DELETED",
        st::OFFLINE => "OFFLINE",
        st::ONLINE => "ONLINE",
        st::ACTIVE => "ACTIVE",
        st::RECOVERY => "RECOVERY",
        _ => "unknown status",
    }
}

/// True when something accepts connections on `addr` right now.
fn listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// `http://<node address>:<port><path>` of the nodes whose `port` is set
/// and answers.
fn live_urls<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    port: impl Fn(&Node) -> u16,
    path: &str,
) -> Vec<String> {
    nodes
        .into_iter()
        .filter(|n| port(n) != 0)
        .map(|n| SocketAddr::new(n.addr.ip(), port(n)))
        .filter(|a| listening(*a))
        .map(|a| format!("http://{a}{path}"))
        .collect()
}

fn print_banner(exe: &Path, root: &Path, lay: &Layout, pending: &[String]) {
    println!(
        "fastdfs-rs sandbox {} in {}",
        if lay.reused { "restarted" } else { "created" },
        root.display()
    );
    println!("  {:<10} {:<8} {:<21} config", "name", "role", "address");
    for n in lay.nodes() {
        println!(
            "  {:<10} {:<8} {:<21} {}",
            n.name,
            n.role,
            n.addr.to_string(),
            n.conf.display()
        );
    }
    if lay.reused {
        println!(
            "  (reused: its .conf files decide layout and ports; the flags shape new sandboxes)"
        );
    }
    let http = live_urls(&lay.storages, |n| n.http_port, "/");
    if !http.is_empty() {
        println!("  storage HTTP: {}", http.join(" "));
        println!("  (download as http://<storage>/<file id>)");
    }
    let metrics = live_urls(lay.nodes(), |n| n.metrics_port, "/metrics");
    if !metrics.is_empty() {
        println!("  metrics: {}", metrics.join(" "));
        println!("  (and /status for JSON)");
    }
    if let Some(g) = &lay.gateway {
        println!(
            "  gateway: http://{}/<file id>  (cache, failover; /purge/<file id>, /healthz)",
            g.addr
        );
    }
    if !pending.is_empty() {
        println!(
            "  not ACTIVE yet (uploads go to the others meanwhile): {}",
            pending.join(", ")
        );
    }
    let exe = exe.display();
    let conf = lay.client_conf.display();
    println!("\nUpload a file:\n  {exe} upload-file {conf} Cargo.toml");
    println!("Download it:\n  {exe} download-file {conf} <file id> /tmp/copy");
    println!("Watch the cluster:\n  {exe} monitor {conf}");
    println!("\nCtrl-C stops everything; the data stays for the next start.");
}

/// `fdfs sandbox`: [`run`], with the error on stderr and exit code 1.
pub fn main(args: SandboxArgs) -> std::process::ExitCode {
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fdfs sandbox: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the sandbox until Ctrl-C / SIGTERM (Ok) or a server dies (Err).
pub fn run(args: SandboxArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let lay = layout(&args)?;
    let root = args.dir.canonicalize().unwrap_or(args.dir.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Installed before any child starts, so SIGTERM or Ctrl-C during
    // start-up stops the servers in order instead of killing the sandbox.
    let (mut term, mut int) = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        anyhow::Ok((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;

    let mut children: Vec<(String, Child)> = Vec::new();
    let timeout = Duration::from_secs(args.start_timeout_secs);
    let settle = Duration::from_secs(args.settle_secs);
    // A server of another sandbox (or anything else) on one of our
    // addresses would answer in place of ours: refuse to start.
    for node in lay.nodes() {
        if listening(node.addr) {
            bail!(
                "{} is already in use (is another sandbox running?): cannot start {}",
                node.addr,
                node.name
            );
        }
    }
    let started: Result<Vec<String>> = (|| {
        for node in lay.nodes() {
            let mut child = spawn(&exe, node)?;
            let up = wait_for_port(node.addr, &mut child, timeout);
            children.push((node.name.clone(), child));
            let hint = || {
                format!(
                    "{} did not start listening on {} (see {} and {})",
                    node.name,
                    node.addr,
                    console_log(node).display(),
                    node.dir.join("logs").display()
                )
            };
            match up {
                Ok(true) => {}
                Ok(false) => bail!(hint()),
                Err(e) => return Err(e.context(hint())),
            }
        }
        let client = Client::new(vec![lay.tracker.addr], ClientOptions::default())?;
        let pending = rt.block_on(async {
            tokio::select! {
                r = wait_active(&client, &lay, settle, timeout) => r,
                _ = term.recv() => bail!("stopped by SIGTERM during start-up"),
                _ = int.recv() => bail!("stopped by Ctrl-C during start-up"),
            }
        })?;
        for (name, c) in children.iter_mut() {
            if let Some(st) = c.try_wait()? {
                bail!("{name} exited during start-up ({st}); see its console.log");
            }
        }
        Ok(pending)
    })();
    let pending = match started {
        Ok(p) => p,
        Err(e) => {
            stop_all(&mut children);
            return Err(e);
        }
    };

    print_banner(&exe, &root, &lay, &pending);
    let died = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = int.recv() => return None,
                _ = term.recv() => return None,
                _ = tick.tick() => {
                    for (name, c) in children.iter_mut() {
                        if let Ok(Some(st)) = c.try_wait() {
                            return Some(format!("{name} exited unexpectedly ({st})"));
                        }
                    }
                }
            }
        }
    });
    println!("stopping the sandbox...");
    let clean = stop_all(&mut children);
    if let Some(why) = died {
        bail!(why);
    }
    if !clean {
        bail!("some servers did not stop cleanly (see their logs)");
    }
    println!("stopped; the data is kept in {}", root.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_list_repeats_its_last_number() {
        let s = parse_servers("2,1").unwrap();
        assert_eq!((s.of(1), s.of(2), s.of(3)), (2, 1, 1));
        assert_eq!(parse_servers("3").unwrap().of(5), 3);
        assert!(parse_servers("0").is_err());
        assert!(parse_servers("2,x").is_err());
        assert!(parse_servers("10").is_err());
    }

    #[test]
    fn net_must_be_three_loopback_octets() {
        assert!(parse_net("127.0.0").is_ok());
        assert!(parse_net("127.3.40").is_ok());
        assert!(parse_net("10.0.0").is_err());
        assert!(parse_net("127.0").is_err());
        assert!(parse_net("127.0.300").is_err());
    }
}
