//! Wall-clock time in the server's time zone, as FastDFS uses it (daily
//! windows, log rotation, times printed by the tools).

/// A moment broken down in local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// East of UTC, in seconds (`+0800` is 28,800).
    pub offset_secs: i64,
}

impl LocalTime {
    /// `unix` seconds in the local time zone; `None` if the C library
    /// cannot convert it.
    pub fn at(unix: i64) -> Option<LocalTime> {
        let t = unix as libc::time_t;
        // SAFETY: an all-zero `tm` is a valid value; localtime_r writes only
        // into the `tm` we pass and reads only `t`, both live for the call,
        // and it is thread-safe.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            return None;
        }
        Some(LocalTime {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            offset_secs: tm.tm_gmtoff,
        })
    }

    pub fn now() -> Option<LocalTime> {
        LocalTime::at(unix_now())
    }

    /// Seconds since local midnight.
    pub fn secs_of_day(&self) -> u32 {
        self.hour * 3600 + self.minute * 60 + self.second
    }

    /// `YYYYMMDD`.
    pub fn date_compact(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Seconds since local midnight now (UTC if the time zone is unknown).
pub fn local_secs_of_day() -> u32 {
    let now = unix_now();
    LocalTime::at(now).map_or((now.rem_euclid(86400)) as u32, |t| t.secs_of_day())
}

/// `YYYY-MM-DD HH:MM:SS` in the local time zone, as upstream tools print
/// it; the number itself if it cannot be converted.
pub fn format_local(unix: i64) -> String {
    match LocalTime::at(unix) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        ),
        None => unix.to_string(),
    }
}

/// The first moment after `now` (unix seconds) when the local clock reads
/// `secs_of_day`: today if still ahead, else tomorrow.
pub fn next_local_time_of_day(now: i64, secs_of_day: u32) -> i64 {
    let today = LocalTime::at(now).map_or(now.rem_euclid(86400) as u32, |t| t.secs_of_day());
    let midnight = now - i64::from(today);
    let at = midnight + i64::from(secs_of_day);
    if at > now {
        at
    } else {
        at + 86400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_agrees_with_itself() {
        let now = unix_now();
        let t = LocalTime::at(now).unwrap();
        assert!((1..=12).contains(&t.month) && (1..=31).contains(&t.day));
        assert!(t.secs_of_day() < 86400 + 1);
        assert_eq!(t.date_compact().len(), 8);
        assert_eq!(format_local(now).len(), 19);
        let next = next_local_time_of_day(now, 0);
        assert!(next > now && next <= now + 86400 + 3600);
        assert_eq!(LocalTime::at(next).unwrap().secs_of_day() % 3600, 0);
        // A time later today comes today; one already passed, tomorrow.
        let later = (t.secs_of_day() + 60).min(86399);
        if later > t.secs_of_day() {
            assert!(next_local_time_of_day(now, later) - now <= 60);
        }
        assert!(next_local_time_of_day(now, t.secs_of_day()) > now);
    }
}
