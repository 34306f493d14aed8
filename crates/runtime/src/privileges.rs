//! `run_by_group` and `run_by_user` (CONFIG.md §2): a daemon started as
//! root becomes that group and user before it creates or opens anything
//! under its base path, so every file it makes is theirs.

use std::ffi::CString;
use std::io;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error("run_by_user = {0}: no such user")]
    NoUser(String),
    #[error("run_by_group = {0}: no such group")]
    NoGroup(String),
    #[error("run_by_group/run_by_user: only root may become uid {uid} gid {gid} (running as uid {current})")]
    NotRoot { uid: u32, gid: u32, current: u32 },
    #[error("{call}: {source}")]
    Sys {
        call: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Becomes `group` and `user` (names, or numeric ids); an empty one is
/// left as it is. Without a group, the user's own group is taken.
pub fn run_as(group: &str, user: &str) -> Result<(), PrivilegeError> {
    if group.is_empty() && user.is_empty() {
        return Ok(());
    }
    let target = if user.is_empty() {
        None
    } else {
        Some(lookup_user(user)?)
    };
    // SAFETY: these calls only read the process credentials.
    let (uid_now, gid_now, euid) = unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) };
    let gid = if group.is_empty() {
        target.map_or(gid_now, |(_, g)| g)
    } else {
        lookup_group(group)?
    };
    let uid = target.map_or(uid_now, |(u, _)| u);
    if uid == uid_now && gid == gid_now {
        return Ok(());
    }
    if euid != 0 {
        return Err(PrivilegeError::NotRoot {
            uid,
            gid,
            current: uid_now,
        });
    }
    let sys = |call: &'static str, rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(PrivilegeError::Sys {
                call,
                source: io::Error::last_os_error(),
            })
        }
    };
    // Supplementary groups first (root's would stay otherwise), then the
    // group, then the user: after setuid nothing else may be changed.
    // SAFETY: plain system calls with a one-element array that outlives
    // the call.
    unsafe {
        sys("setgroups", libc::setgroups(1, &gid))?;
        sys("setgid", libc::setgid(gid))?;
        sys("setuid", libc::setuid(uid))?;
    }
    Ok(())
}

/// Calls a `get*nam_r` lookup with a buffer that grows while it answers
/// ERANGE; `Ok(false)`: no such name.
fn with_buffer(
    call: &'static str,
    mut lookup: impl FnMut(&mut [u8]) -> (libc::c_int, bool),
) -> Result<bool, PrivilegeError> {
    let mut buf = vec![0u8; 4096];
    loop {
        match lookup(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (e, _) => {
                return Err(PrivilegeError::Sys {
                    call,
                    source: io::Error::from_raw_os_error(e),
                })
            }
        }
    }
}

/// (uid, primary gid) of a user name or numeric uid (which keeps the
/// current group).
fn lookup_user(name: &str) -> Result<(u32, u32), PrivilegeError> {
    let c = CString::new(name).map_err(|_| PrivilegeError::NoUser(name.to_owned()))?;
    // SAFETY: all-zero is a valid `passwd`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let found = with_buffer("getpwnam_r", |buf| {
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwnam_r writes only into `pwd`, `buf` (of the length
        // given) and `found`, all live for the call.
        let rc = unsafe {
            libc::getpwnam_r(
                c.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        (rc, !found.is_null())
    })?;
    if found {
        return Ok((pwd.pw_uid, pwd.pw_gid));
    }
    // SAFETY: getgid has no preconditions.
    name.parse::<u32>()
        .map(|uid| (uid, unsafe { libc::getgid() }))
        .map_err(|_| PrivilegeError::NoUser(name.to_owned()))
}

/// The gid of a group name or numeric gid.
fn lookup_group(name: &str) -> Result<u32, PrivilegeError> {
    let c = CString::new(name).map_err(|_| PrivilegeError::NoGroup(name.to_owned()))?;
    // SAFETY: all-zero is a valid `group`.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let found = with_buffer("getgrnam_r", |buf| {
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `lookup_user`, for `group`.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        (rc, !found.is_null())
    })?;
    if found {
        return Ok(grp.gr_gid);
    }
    name.parse::<u32>()
        .map_err(|_| PrivilegeError::NoGroup(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_looked_up() {
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert_eq!(lookup_group("root").unwrap(), 0);
        assert_eq!(lookup_user("4242").unwrap().0, 4242);
        assert_eq!(lookup_group("4242").unwrap(), 4242);
        assert!(matches!(
            lookup_user("no-such-user-fdfs"),
            Err(PrivilegeError::NoUser(_))
        ));
        assert!(matches!(
            lookup_group("no-such-group-fdfs"),
            Err(PrivilegeError::NoGroup(_))
        ));
    }

    #[test]
    fn staying_who_we_are_needs_nothing() {
        // SAFETY: reads the credentials only.
        let uid = unsafe { libc::getuid() };
        assert!(run_as("", "").is_ok());
        assert!(run_as("", &uid.to_string()).is_ok());
    }
}
