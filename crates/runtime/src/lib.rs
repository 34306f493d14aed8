//! Daemon plumbing shared by `fdfs tracker` and `fdfs storage`.
//!
//! [`daemon`] starts, stops and restarts a server the FastDFS way (pid file
//! under `<base_path>/data`, exclusive lock, fork into the background unless
//! asked not to, log file under `<base_path>/logs` rotated by [`logfile`],
//! SIGTERM/SIGINT turn into one [`Shutdown`] signal, SIGHUP reopens the
//! log, [`privileges`] for `run_by_user`). [`clock`] is local wall-clock
//! time. [`net`] is the accept loop (allow_hosts,
//! connection limit, drain on shutdown) and [`net::Conn`], a framed
//! connection with the timeouts and size limits of PROTOCOL.md §1.3/§12.10.
//! [`metrics`] writes the Prometheus text format the daemons expose.
//!
//! It must not know any FastDFS command: no tracker or storage logic lives
//! here, only framing (the 10-byte header from `fdfs-proto`) and process
//! life-cycle.

pub mod clock;
pub mod daemon;
pub mod logfile;
pub mod metrics;
pub mod net;
pub mod privileges;
mod shutdown;

pub use shutdown::Shutdown;
