//! `fdfs`: one binary for every fastdfs-rs role.
//!
//! This file only dispatches: `fdfs <subcommand> ...`, or, when installed
//! under a FastDFS program name (symlink or copy, busybox style), that
//! program's own syntax (`fdfs_trackerd <conf> [start|stop|restart]`).
//! Each role lives in its crate; the wiring for daemons is in `daemon.rs`.

mod bench;
mod daemon;
mod fsck;
mod gateway;
mod sandbox;
mod tools;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "fdfs",
    version,
    about = "fastdfs-rs: FastDFS-compatible tracker, storage and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the tracker server (as `fdfs_trackerd` does).
    Tracker(daemon::DaemonArgs),
    /// Run the storage server (as `fdfs_storaged` does).
    Storage(daemon::DaemonArgs),
    #[command(flatten)]
    Tool(tools::ToolCmd),
    /// Run the HTTP gateway: one caching entry for the whole cluster.
    Gateway(gateway::GatewayArgs),
    /// Print a download URL signed with the anti-steal token of http.conf.
    Token(gateway::TokenArgs),
    /// Run a whole local cluster (tracker + storages) until Ctrl-C.
    Sandbox(sandbox::SandboxArgs),
    /// Load a FastDFS-protocol cluster and report ops/s, latency and replication lag.
    Bench(bench::BenchArgs),
    /// Check a storage's files against its binlog (sizes, CRC32 with --crc); --repair fetches damaged ones from the group.
    Fsck(fsck::FsckArgs),
}

/// Runs a FastDFS program given its full argv (argv[0] included).
type Persona = fn(Vec<OsString>) -> ExitCode;

/// FastDFS daemon names this binary answers to, and what runs them.
const PERSONAS: &[(&str, Persona)] = &[
    ("fdfs_trackerd", daemon::trackerd_main),
    ("fdfs_storaged", daemon::storaged_main),
];

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("fdfs")
        .to_owned();
    if let Some((_, run)) = PERSONAS.iter().find(|(name, _)| *name == argv0) {
        return run(args);
    }
    if let Some(code) = tools::run_as(&argv0, args.clone()) {
        return code;
    }
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| tools::usage_exit(e));
    match cli.command {
        Command::Tracker(a) => daemon::tracker(a, "fdfs tracker"),
        Command::Storage(a) => daemon::storage(a, "fdfs storage"),
        Command::Tool(t) => tools::run(t),
        Command::Gateway(a) => gateway::gateway(a),
        Command::Token(a) => gateway::token(a),
        Command::Sandbox(a) => sandbox::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Fsck(a) => fsck::main(a),
    }
}
