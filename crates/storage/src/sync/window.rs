//! The daily sync window (`sync_start_time` .. `sync_end_time`, local
//! time, minute precision, end minute included). Outside it the workers
//! hold changes back; `00:00`..`23:59` means always.

use std::time::Duration;

use fdfs_conf::TimeOfDay;

/// A daily window; `start > end` wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

fn mins(t: TimeOfDay) -> u32 {
    u32::from(t.hour) * 60 + u32::from(t.minute)
}

impl Window {
    pub fn always(&self) -> bool {
        mins(self.start) == 0 && mins(self.end) >= 23 * 60 + 59
    }

    /// True if `secs` (seconds since local midnight) is inside the window.
    pub fn contains(&self, secs: u32) -> bool {
        if self.always() {
            return true;
        }
        let m = (secs / 60) % (24 * 60);
        let (s, e) = (mins(self.start), mins(self.end));
        if s <= e {
            s <= m && m <= e
        } else {
            m >= s || m <= e
        }
    }

    /// How long to wait from `secs` until the window opens (zero inside it).
    pub fn wait_from(&self, secs: u32) -> Duration {
        if self.contains(secs) {
            return Duration::ZERO;
        }
        let day = 24 * 3600;
        let s = mins(self.start) * 60;
        let secs = secs % day;
        let d = if s > secs { s - secs } else { day - secs + s };
        Duration::from_secs(u64::from(d))
    }

    /// How long to wait now (local time).
    pub fn wait_now(&self) -> Duration {
        if self.always() {
            return Duration::ZERO;
        }
        self.wait_from(local_secs_of_day())
    }
}

/// Seconds since local midnight (the server's time zone, like upstream).
pub use fdfs_runtime::clock::local_secs_of_day;

#[cfg(test)]
mod tests {
    use super::*;

    fn w(sh: u8, sm: u8, eh: u8, em: u8) -> Window {
        Window {
            start: TimeOfDay {
                hour: sh,
                minute: sm,
            },
            end: TimeOfDay {
                hour: eh,
                minute: em,
            },
        }
    }

    #[test]
    fn default_window_is_always_open() {
        let d = w(0, 0, 23, 59);
        assert!(d.always());
        assert!(d.contains(23 * 3600 + 59 * 60 + 59));
        assert_eq!(d.wait_now(), Duration::ZERO);
    }

    #[test]
    fn day_window_bounds_and_wait() {
        let x = w(9, 30, 17, 0);
        assert!(!x.contains(9 * 3600 + 29 * 60 + 59));
        assert!(x.contains(9 * 3600 + 30 * 60));
        assert!(x.contains(17 * 3600 + 59), "end minute included");
        assert!(!x.contains(17 * 3600 + 60));
        assert_eq!(x.wait_from(9 * 3600), Duration::from_secs(30 * 60));
        assert_eq!(
            x.wait_from(18 * 3600),
            Duration::from_secs(15 * 3600 + 30 * 60)
        );
        assert_eq!(x.wait_from(12 * 3600), Duration::ZERO);
    }

    #[test]
    fn window_across_midnight() {
        let n = w(22, 0, 2, 0);
        assert!(n.contains(23 * 3600));
        assert!(n.contains(3600));
        assert!(!n.contains(12 * 3600));
        assert_eq!(n.wait_from(21 * 3600), Duration::from_secs(3600));
    }

    #[test]
    fn local_time_is_within_a_day() {
        assert!(local_secs_of_day() < 86400);
    }
}
