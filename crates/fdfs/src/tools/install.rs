//! `fdfs install <dir>`: the upstream command names as symlinks to this
//! executable, so `/usr/bin/fdfs_upload_file /etc/fdfs/client.conf ll.zip`
//! works as the deployment guide writes it.

use std::path::PathBuf;

use anyhow::Context;

/// `fdfs install <dir> [--force]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to create the links in (created if missing), e.g. /usr/bin
    pub dir: PathBuf,
    /// Also replace regular files of the same names (symlinks are always replaced)
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the path of this executable")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    for name in super::INSTALL_NAMES {
        let link = a.dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() || (a.force && !m.is_dir()) => {
                std::fs::remove_file(&link)
                    .with_context(|| format!("cannot replace {}", link.display()))?;
            }
            Ok(_) => {
                return Err(super::invalid(format!(
                    "{} exists and is not a symlink (use --force to replace it)",
                    link.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", link.display())),
        }
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("cannot link {} to {}", link.display(), exe.display()))?;
        println!("{} -> {}", link.display(), exe.display());
    }
    Ok(())
}
