//! Status bytes: Linux errno values as FastDFS sends them (PROTOCOL.md §1.2).

pub const OK: u8 = 0;
pub const EPERM: u8 = 1;
pub const ENOENT: u8 = 2;
pub const EIO: u8 = 5;
pub const EAGAIN: u8 = 11;
pub const ENOMEM: u8 = 12;
pub const EACCES: u8 = 13;
pub const EFAULT: u8 = 14;
pub const EBUSY: u8 = 16;
pub const EEXIST: u8 = 17;
pub const EISDIR: u8 = 21;
pub const EINVAL: u8 = 22;
pub const ENOSPC: u8 = 28;
pub const ENAMETOOLONG: u8 = 36;
pub const ENONET: u8 = 64;
pub const EOPNOTSUPP: u8 = 95;
pub const ETIMEDOUT: u8 = 110;
pub const EALREADY: u8 = 114;
pub const ECANCELED: u8 = 125;

/// The symbolic name and a short description of a status byte.
pub fn describe(status: u8) -> (&'static str, &'static str) {
    match status {
        OK => ("OK", "success"),
        EPERM => ("EPERM", "operation not permitted"),
        ENOENT => ("ENOENT", "no such file, group or server"),
        EIO => ("EIO", "input/output error"),
        EAGAIN => ("EAGAIN", "try again"),
        ENOMEM => ("ENOMEM", "out of memory"),
        EACCES => ("EACCES", "permission denied"),
        EFAULT => ("EFAULT", "bad state"),
        EBUSY => ("EBUSY", "busy"),
        EEXIST => ("EEXIST", "already exists"),
        EISDIR => ("EISDIR", "is a directory"),
        EINVAL => ("EINVAL", "invalid request"),
        ENOSPC => ("ENOSPC", "no space left"),
        ENAMETOOLONG => ("ENAMETOOLONG", "name too long"),
        ENONET => ("ENONET", "server not online"),
        EOPNOTSUPP => ("EOPNOTSUPP", "operation not supported"),
        ETIMEDOUT => ("ETIMEDOUT", "timed out"),
        EALREADY => ("EALREADY", "already done"),
        ECANCELED => ("ECANCELED", "canceled"),
        _ => ("E?", "unknown error"),
    }
}
