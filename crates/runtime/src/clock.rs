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
    next_local_time_every(now, secs_of_day, 86400)
}

/// The first moment after `now` (unix seconds) of the schedule "at
/// `base_secs` past local midnight, then every `interval` seconds": the
/// times `base + k * interval` (any whole `k`) of the local day, as
/// FastDFS's time-based jobs run (e.g. `trunk_create_file_time_base` and
/// `trunk_create_file_interval`). An interval of 0 counts as 1 second.
pub fn next_local_time_every(now: i64, base_secs: u32, interval: u32) -> i64 {
    let today = LocalTime::at(now).map_or(now.rem_euclid(86400) as u32, |t| t.secs_of_day());
    let base = now - i64::from(today) + i64::from(base_secs);
    next_on_grid(now, base, i64::from(interval))
}

/// The first `anchor + k * every` (any whole `k`) after `now`: times
/// before the anchor count too, so a short interval fires soon after
/// midnight rather than only from the time base on.
fn next_on_grid(now: i64, anchor: i64, every: i64) -> i64 {
    let every = every.max(1);
    anchor + ((now - anchor).div_euclid(every) + 1) * every
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

    #[test]
    fn the_next_run_of_a_time_base_and_interval() {
        // Anchor 1000 (the time base today), every 300 s.
        let next = |now| next_on_grid(now, 1000, 300);
        assert_eq!(next(1000), 1300, "at the base: the one after");
        assert_eq!(next(999), 1000, "just before the base: the base");
        assert_eq!(next(1299), 1300);
        assert_eq!(next(1300), 1600);
        assert_eq!(next(5000), 5200, "base + 14 * 300");
        // Before the base, the grid runs backwards from it too.
        assert_eq!(next(0), 100);
        assert_eq!(next(-50), 100);
        assert_eq!(next(400), 700);
        // A daily interval: today's base if still ahead, else tomorrow's.
        assert_eq!(next_on_grid(500, 1000, 86400), 1000);
        assert_eq!(next_on_grid(1000, 1000, 86400), 87400);
        // An interval of 0 is taken as 1 second, never a busy loop.
        assert_eq!(next_on_grid(1000, 1000, 0), 1001);

        // In local time: a 00:00 base and 5 s interval fires within 5 s,
        // on a multiple of 5 s of the local day; a day's interval is the
        // daily time.
        let now = unix_now();
        let at = next_local_time_every(now, 0, 5);
        assert!(at > now && at <= now + 5, "{at} after {now}");
        assert_eq!(LocalTime::at(at).unwrap().secs_of_day() % 5, 0);
        let base = LocalTime::at(now).unwrap().secs_of_day();
        let base = (base + 3600) % 86400;
        assert_eq!(
            next_local_time_every(now, base, 86400),
            next_local_time_of_day(now, base)
        );
        // Every 2 hours from 02:00: an even hour, within 2 hours.
        let at = next_local_time_every(now, 7200, 7200);
        assert!(at > now && at <= now + 7200);
        let t = LocalTime::at(at).unwrap();
        assert_eq!((t.hour % 2, t.minute, t.second), (0, 0, 0));
    }
}
