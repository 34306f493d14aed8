//! The FastDFS command-line tools (fdfs_upload_file, fdfs_download_file,
//! fdfs_delete_file, fdfs_file_info, fdfs_upload_appender, fdfs_append_file,
//! fdfs_regenerate_filename, fdfs_crc32, fdfs_monitor), the client
//! operations upstream has no tool for (`fdfs set-metadata`, `get-metadata`,
//! `upload-slave`, `modify-file`, `truncate-file`) and `fdfs install`.
//!
//! Each tool is one module: its clap arguments (upstream's positional
//! usage) and an async `run` on top of `fdfs-client`. They are reachable as
//! `fdfs <subcommand>` and, busybox style, the upstream tools under their
//! names through symlinks made by `fdfs install <dir>` ([`run_as`]).
//!
//! Unlike upstream, every failure prints what failed with the errno name
//! and number on stderr and exits non-zero (the errno when it fits in an
//! exit code, else 1). The tools hold no state and never read a whole file
//! into memory.

mod append_file;
mod crc32;
mod delete_file;
mod download_file;
mod file_info;
mod get_metadata;
mod install;
mod modify_file;
mod monitor;
mod regenerate_filename;
mod set_metadata;
mod truncate_file;
mod upload_appender;
mod upload_file;
mod upload_slave;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use fdfs_client::{Client, ClientOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files larger than this get a progress bar on a terminal.
const PROGRESS_MIN: u64 = 16 * 1024 * 1024;

/// The tool subcommands, to be flattened into the binary's command enum.
#[derive(clap::Subcommand, Debug)]
pub enum ToolCmd {
    /// Upload a local file and print its file id (fdfs_upload_file).
    #[command(name = "upload-file", visible_alias = "upload_file")]
    UploadFile(upload_file::Args),
    /// Download a file, whole or a range, to a local file (fdfs_download_file).
    #[command(name = "download-file", visible_alias = "download_file")]
    DownloadFile(download_file::Args),
    /// Delete a file (fdfs_delete_file).
    #[command(name = "delete-file", visible_alias = "delete_file")]
    DeleteFile(delete_file::Args),
    /// Show a file's source server, creation time, size and CRC32 (fdfs_file_info).
    #[command(name = "file-info", visible_alias = "file_info")]
    FileInfo(file_info::Args),
    /// Upload a local file as an appender file and print its id (fdfs_upload_appender).
    #[command(name = "upload-appender", visible_alias = "upload_appender")]
    UploadAppender(upload_appender::Args),
    /// Append a local file to an appender file (fdfs_append_file).
    #[command(name = "append-file", visible_alias = "append_file")]
    AppendFile(append_file::Args),
    /// Turn an appender file into a normal file with a new name, print it
    /// (fdfs_regenerate_filename).
    #[command(name = "regenerate-filename", visible_alias = "regenerate_filename")]
    RegenerateFilename(regenerate_filename::Args),
    /// Overwrite an appender file from an offset with a local file.
    #[command(name = "modify-file")]
    ModifyFile(modify_file::Args),
    /// Set an appender file's size.
    #[command(name = "truncate-file")]
    TruncateFile(truncate_file::Args),
    /// Upload a local file as a slave of a master file and print its id.
    #[command(name = "upload-slave")]
    UploadSlave(upload_slave::Args),
    /// Replace (or with --merge, merge into) a file's metadata.
    #[command(name = "set-metadata")]
    SetMetadata(set_metadata::Args),
    /// Print a file's metadata, one name=value a line.
    #[command(name = "get-metadata")]
    GetMetadata(get_metadata::Args),
    /// Print the CRC32 of a local file as FastDFS computes it (fdfs_crc32).
    #[command(name = "crc32")]
    Crc32(crc32::Args),
    /// List groups and storage servers, or delete a storage (fdfs_monitor).
    #[command(name = "monitor", disable_help_flag = true)]
    Monitor(monitor::Args),
    /// Create the fdfs_* command symlinks to this executable in a directory.
    #[command(name = "install")]
    Install(install::Args),
}

impl ToolCmd {
    /// The upstream program name, used as the prefix of error messages.
    fn tool_name(&self) -> &'static str {
        match self {
            ToolCmd::UploadFile(_) => "fdfs_upload_file",
            ToolCmd::DownloadFile(_) => "fdfs_download_file",
            ToolCmd::DeleteFile(_) => "fdfs_delete_file",
            ToolCmd::FileInfo(_) => "fdfs_file_info",
            ToolCmd::UploadAppender(_) => "fdfs_upload_appender",
            ToolCmd::AppendFile(_) => "fdfs_append_file",
            ToolCmd::RegenerateFilename(_) => "fdfs_regenerate_filename",
            ToolCmd::ModifyFile(_) => "fdfs modify-file",
            ToolCmd::TruncateFile(_) => "fdfs truncate-file",
            ToolCmd::UploadSlave(_) => "fdfs upload-slave",
            ToolCmd::SetMetadata(_) => "fdfs set-metadata",
            ToolCmd::GetMetadata(_) => "fdfs get-metadata",
            ToolCmd::Crc32(_) => "fdfs_crc32",
            ToolCmd::Monitor(_) => "fdfs_monitor",
            ToolCmd::Install(_) => "fdfs install",
        }
    }
}

/// Names `fdfs install` links to the executable: the daemons (dispatched by
/// the binary itself) and the tools (dispatched by [`run_as`]).
pub const INSTALL_NAMES: &[&str] = &[
    "fdfs_trackerd",
    "fdfs_storaged",
    "fdfs_upload_file",
    "fdfs_download_file",
    "fdfs_delete_file",
    "fdfs_file_info",
    "fdfs_upload_appender",
    "fdfs_append_file",
    "fdfs_regenerate_filename",
    "fdfs_crc32",
    "fdfs_monitor",
];

/// Runs a tool subcommand to completion; the exit code is 0 on success.
pub fn run(cmd: ToolCmd) -> ExitCode {
    init_logging();
    let name = cmd.tool_name();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                name,
                &anyhow::Error::new(e).context("cannot start the async runtime"),
            )
        }
    };
    let r = rt.block_on(async move {
        match cmd {
            ToolCmd::UploadFile(a) => upload_file::run(a).await,
            ToolCmd::DownloadFile(a) => download_file::run(a).await,
            ToolCmd::DeleteFile(a) => delete_file::run(a).await,
            ToolCmd::FileInfo(a) => file_info::run(a).await,
            ToolCmd::UploadAppender(a) => upload_appender::run(a).await,
            ToolCmd::AppendFile(a) => append_file::run(a).await,
            ToolCmd::RegenerateFilename(a) => regenerate_filename::run(a).await,
            ToolCmd::ModifyFile(a) => modify_file::run(a).await,
            ToolCmd::TruncateFile(a) => truncate_file::run(a).await,
            ToolCmd::UploadSlave(a) => upload_slave::run(a).await,
            ToolCmd::SetMetadata(a) => set_metadata::run(a).await,
            ToolCmd::GetMetadata(a) => get_metadata::run(a).await,
            ToolCmd::Crc32(a) => crc32::run(a).await,
            ToolCmd::Monitor(a) => monitor::run(a).await,
            ToolCmd::Install(a) => install::run(a),
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(name, &e),
    }
}

/// Busybox dispatch: when the program was started as `fdfs_upload_file`
/// (etc., the basename of argv[0]), parses `args` (argv, including argv[0])
/// with that tool's usage and runs it. `None` when `argv0` is not a tool.
pub fn run_as(argv0: &str, args: Vec<OsString>) -> Option<ExitCode> {
    let base = Path::new(argv0).file_name()?.to_str()?;
    let base: &'static str = INSTALL_NAMES.iter().find(|n| **n == base)?;
    let cmd = match base {
        "fdfs_upload_file" => ToolCmd::UploadFile(parse_standalone(base, args, false)),
        "fdfs_download_file" => ToolCmd::DownloadFile(parse_standalone(base, args, false)),
        "fdfs_delete_file" => ToolCmd::DeleteFile(parse_standalone(base, args, false)),
        "fdfs_file_info" => ToolCmd::FileInfo(parse_standalone(base, args, false)),
        "fdfs_upload_appender" => ToolCmd::UploadAppender(parse_standalone(base, args, false)),
        "fdfs_append_file" => ToolCmd::AppendFile(parse_standalone(base, args, false)),
        "fdfs_regenerate_filename" => {
            ToolCmd::RegenerateFilename(parse_standalone(base, args, false))
        }
        "fdfs_crc32" => ToolCmd::Crc32(parse_standalone(base, args, false)),
        "fdfs_monitor" => ToolCmd::Monitor(parse_standalone(base, args, true)),
        _ => return None,
    };
    Some(run(cmd))
}

/// Parses one tool's arguments as a program of its own (exits on --help or
/// a usage error, like any clap program).
fn parse_standalone<T: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    args: Vec<OsString>,
    no_help_flag: bool,
) -> T {
    let cmd = clap::Command::new(name).version(env!("CARGO_PKG_VERSION"));
    let cmd = if no_help_flag {
        cmd.disable_help_flag(true)
    } else {
        cmd
    };
    let m = T::augment_args(cmd)
        .try_get_matches_from(args)
        .unwrap_or_else(|e| usage_exit(e));
    T::from_arg_matches(&m).unwrap_or_else(|e| usage_exit(e))
}

/// Ends the program on a command line clap did not take: help and version
/// go to stdout with status 0; a usage error goes to stderr with status
/// EINVAL (22), not clap's 2, which our tools use for ENOENT.
pub fn usage_exit(e: clap::Error) -> ! {
    if !e.use_stderr() {
        e.exit();
    }
    let _ = e.print();
    std::process::exit(EINVAL_EXIT);
}

/// The exit status of a usage error (EINVAL).
pub const EINVAL_EXIT: i32 = 22;

fn init_logging() {
    // Client warnings (a tracker skipped...) go to stderr; RUST_LOG overrides.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The trackers and timeouts of a client.conf, or of any conf with
/// `tracker_server` lines (storage.conf, as upstream's monitor allows).
pub(crate) fn conf_trackers(
    conf: &Path,
) -> anyhow::Result<(Vec<fdfs_conf::HostPort>, ClientOptions)> {
    let (trackers, connect, network) = match fdfs_conf::ClientConf::load(conf) {
        Ok(c) => (c.tracker_servers, c.connect_timeout, c.network_timeout),
        Err(client_err) => match fdfs_conf::StorageConf::load(conf) {
            Ok(s) => (
                s.tracker_servers,
                s.daemon.connect_timeout,
                s.daemon.network_timeout,
            ),
            Err(_) => {
                return Err(anyhow::Error::new(client_err))
                    .with_context(|| format!("cannot load the configuration {}", conf.display()))
            }
        },
    };
    let opts = ClientOptions {
        connect_timeout: connect,
        network_timeout: network,
        // One-shot tools: nothing to pool.
        use_connection_pool: false,
        ..ClientOptions::default()
    };
    Ok((trackers, opts))
}

/// A client for the trackers of `conf` (see [`conf_trackers`]).
pub(crate) fn load_client(conf: &Path) -> anyhow::Result<Client> {
    let (trackers, opts) = conf_trackers(conf)?;
    Client::from_host_ports(&trackers, opts)
        .with_context(|| format!("no usable tracker_server in {}", conf.display()))
}

/// A usage error with EINVAL semantics.
pub(crate) fn invalid(msg: impl Into<String>) -> anyhow::Error {
    fdfs_client::Error::InvalidArgument(msg.into()).into()
}

/// Writes a tool's output to stdout. A closed pipe (`| head`) is not an
/// error worth a panic or a message.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// Whether a progress bar could be shown at all.
pub(crate) fn watching() -> bool {
    std::io::stderr().is_terminal() || std::io::stdout().is_terminal()
}

/// A progress bar for a transfer of `size` bytes, when it is large and
/// someone is watching (stderr, else stdout, is a terminal).
pub(crate) fn progress(size: u64, what: &str) -> Option<ProgressBar> {
    if size <= PROGRESS_MIN {
        return None;
    }
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else if std::io::stdout().is_terminal() {
        ProgressDrawTarget::stdout()
    } else {
        return None;
    };
    let bar = ProgressBar::with_draw_target(Some(size), target);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    Some(bar)
}

/// Opens a local regular file to send: the handle and its metadata.
async fn open_local(path: &Path) -> anyhow::Result<(tokio::fs::File, std::fs::Metadata)> {
    let f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let meta = f
        .metadata()
        .await
        .with_context(|| format!("cannot stat {}", path.display()))?;
    // Its size is what is announced: a pipe or a device has none.
    if !meta.is_file() {
        return Err(invalid(format!("{} is not a regular file", path.display())));
    }
    Ok((f, meta))
}

/// `f` (of `size` bytes) as a reader that moves a progress bar when the
/// file is large and someone is watching ([`progress`]); finish the bar,
/// if any, when the transfer ends.
fn progress_reader(
    f: tokio::fs::File,
    size: u64,
    what: &str,
) -> (Box<dyn tokio::io::AsyncRead + Unpin>, Option<ProgressBar>) {
    match progress(size, what) {
        Some(bar) => (Box::new(bar.wrap_async_read(f)), Some(bar)),
        None => (Box::new(f), None),
    }
}

/// Opens the local regular file `path` and runs `op` on a reader of it and
/// its size, with a progress bar saying `what` while it runs (see
/// [`progress`]). The outer error is the local file's, the inner one `op`'s.
pub(crate) async fn send_local<T, E>(
    path: &Path,
    what: &str,
    op: impl AsyncFnOnce(&mut (dyn tokio::io::AsyncRead + Unpin), u64) -> Result<T, E>,
) -> anyhow::Result<Result<T, E>> {
    let (f, meta) = open_local(path).await?;
    let size = meta.len();
    let (mut src, bar) = progress_reader(f, size, what);
    let r = op(&mut *src, size).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(r)
}

/// The symbolic name of an errno (FastDFS statuses and common socket and
/// file errors).
fn errno_name(code: i32) -> Option<&'static str> {
    if let Ok(b) = u8::try_from(code) {
        let (name, _) = fdfs_client::proto::errno::describe(b);
        if name != "E?" && b != 0 {
            return Some(name);
        }
    }
    Some(match code {
        3 => "ESRCH",
        4 => "EINTR",
        9 => "EBADF",
        20 => "ENOTDIR",
        24 => "EMFILE",
        27 => "EFBIG",
        30 => "EROFS",
        32 => "EPIPE",
        40 => "ELOOP",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        107 => "ENOTCONN",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        _ => return None,
    })
}

/// The errno behind an error chain: a client error's code, an OS error, or
/// a configuration error's file error (EINVAL for other bad configs).
fn error_code(e: &anyhow::Error) -> Option<i32> {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<fdfs_client::Error>() {
            return Some(c.code());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        if let Some(c) = cause.downcast_ref::<fdfs_conf::ConfError>() {
            return Some(match c {
                fdfs_conf::ConfError::Io { source, .. } => source.raw_os_error().unwrap_or(5),
                _ => 22,
            });
        }
    }
    None
}

/// The context chain joined by ": ", skipping causes whose text an outer
/// message already includes (library errors often embed their source).
fn chain_text(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if msg.contains(&t) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&t);
    }
    msg
}

/// Prints `tool: what failed: why [ENAME, errno N]` and picks the exit code.
fn fail(tool: &str, e: &anyhow::Error) -> ExitCode {
    let msg = chain_text(e);
    match error_code(e) {
        Some(code) => {
            let tag = format!("(errno {code})");
            if msg.contains(&tag) {
                eprintln!("{tool}: {msg}");
            } else {
                let name = errno_name(code).unwrap_or("errno");
                eprintln!("{tool}: {msg} [{name}, errno {code}]");
            }
            ExitCode::from(u8::try_from(code).ok().filter(|&c| c != 0).unwrap_or(1))
        }
        None => {
            eprintln!("{tool}: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_carry_errno_name_and_number() {
        let e: anyhow::Error = fdfs_client::Error::Connect {
            op: "QUERY_FETCH_ONE",
            server: "127.0.0.1:1".parse().unwrap(),
            source: std::io::Error::from_raw_os_error(111),
        }
        .into();
        assert_eq!(error_code(&e), Some(111));
        assert_eq!(errno_name(111), Some("ECONNREFUSED"));
        assert_eq!(errno_name(2), Some("ENOENT"));
        let e = invalid("bad port").context("parsing arguments");
        assert_eq!(error_code(&e), Some(22));
    }

    #[test]
    fn local_time_has_the_upstream_shape() {
        let s = fdfs_runtime::clock::format_local(1_589_774_253);
        assert_eq!(s.len(), 19, "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[13..14], ":");
        assert!(s.starts_with("2020-05-1"), "{s}");
    }
}
