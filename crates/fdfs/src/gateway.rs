//! `fdfs gateway <gateway.conf>` (the cluster's HTTP entry, see
//! docs/gateway.md) and `fdfs token <file_id>` (a signed download URL).
//! Wiring only: the work is in fdfs-http.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use fdfs_http::gateway::{Gateway, GatewayConf};

/// `fdfs gateway <gateway.conf>`: runs in the foreground until SIGINT/SIGTERM.
#[derive(clap::Args, Debug)]
pub struct GatewayArgs {
    /// The gateway's configuration file.
    pub conf: PathBuf,
}

/// `fdfs token <file_id>`: prints a URL carrying a valid anti-steal token.
#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// File id, e.g. group1/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip
    pub file_id: String,
    /// http.conf (or mod_fastdfs.conf, which includes it) with the secret key.
    #[arg(long, default_value = "/etc/fdfs/http.conf")]
    pub conf: PathBuf,
    /// Where the URL points.
    #[arg(long, default_value = "http://127.0.0.1:8888")]
    pub base_url: String,
    /// Signing time (unix seconds; default now, 0 = never expires).
    #[arg(long)]
    pub ts: Option<u64>,
    /// Leave the group out of the URL (storages with url_have_group_name=false).
    #[arg(long)]
    pub no_group: bool,
}

pub fn gateway(args: GatewayArgs) -> ExitCode {
    match run_gateway(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fdfs gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_gateway(args: &GatewayArgs) -> anyhow::Result<()> {
    let conf = GatewayConf::load(&args.conf)
        .with_context(|| format!("cannot load {}", args.conf.display()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async {
        let listen = conf.listen;
        let gw = Gateway::new(conf)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        reopen_on_sighup(gw.clone())?;
        tracing::info!(%listen, "gateway listening");
        gw.serve(listener, shutdown_signal()).await?;
        tracing::info!("gateway stopped");
        Ok(())
    })
}

/// SIGHUP reopens the access log, for an outside logrotate.
fn reopen_on_sighup(gw: Gateway) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match gw.reopen_access_log() {
                Ok(()) => tracing::info!("SIGHUP received, access log reopened"),
                Err(e) => tracing::error!("SIGHUP received, cannot reopen the access log: {e}"),
            }
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn token(args: TokenArgs) -> ExitCode {
    match signed_url(&args) {
        Ok(url) => {
            println!("{url}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fdfs token: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn signed_url(args: &TokenArgs) -> anyhow::Result<String> {
    let id = fdfs_proto::FileId::parse(&args.file_id)
        .with_context(|| format!("bad file id {:?}", args.file_id))?;
    let http = fdfs_conf::HttpConf::load(&args.conf)
        .with_context(|| format!("cannot load {}", args.conf.display()))?;
    if http.anti_steal_secret_key.is_empty() {
        anyhow::bail!(
            "{}: http.anti_steal.secret_key is not set",
            args.conf.display()
        );
    }
    let ts = match args.ts {
        Some(t) => t,
        None => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    };
    let logic = id.logic.to_string();
    let token = fdfs_http::make_token(&logic, &http.anti_steal_secret_key, ts);
    let base = args.base_url.trim_end_matches('/');
    let path = if args.no_group {
        logic
    } else {
        format!("{}/{logic}", id.group)
    };
    Ok(format!("{base}/{path}?token={token}&ts={ts}"))
}
