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

/// An entry of the user or group database: a plain C struct for which all
/// zero bytes are a valid value.
trait DbEntry {}
impl DbEntry for libc::passwd {}
impl DbEntry for libc::group {}

/// `getpwnam_r` or `getgrnam_r`.
type GetByName<T> = unsafe extern "C" fn(
    *const libc::c_char,
    *mut T,
    *mut libc::c_char,
    libc::size_t,
    *mut *mut T,
) -> libc::c_int;

/// Looks `name` up with `get` (named `call` in errors), with a buffer that
/// grows while it answers ERANGE; `None`: no such name. Only the number
/// fields of the entry may be read: its strings pointed into the buffer.
fn lookup<T: DbEntry>(
    call: &'static str,
    name: &str,
    get: GetByName<T>,
) -> Result<Option<T>, PrivilegeError> {
    let Ok(c) = CString::new(name) else {
        return Ok(None);
    };
    // SAFETY: all-zero is a valid `T` (DbEntry).
    let mut entry: T = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    loop {
        let mut found: *mut T = std::ptr::null_mut();
        // SAFETY: `get` writes only into `entry`, `buf` (of the length
        // given) and `found`, all live for the call.
        let rc = unsafe {
            get(
                c.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 => return Ok((!found.is_null()).then_some(entry)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            e => {
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
    if let Some(pwd) = lookup("getpwnam_r", name, libc::getpwnam_r)? {
        return Ok((pwd.pw_uid, pwd.pw_gid));
    }
    // SAFETY: getgid has no preconditions.
    name.parse::<u32>()
        .map(|uid| (uid, unsafe { libc::getgid() }))
        .map_err(|_| PrivilegeError::NoUser(name.to_owned()))
}

/// The gid of a group name or numeric gid.
fn lookup_group(name: &str) -> Result<u32, PrivilegeError> {
    if let Some(grp) = lookup("getgrnam_r", name, libc::getgrnam_r)? {
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
