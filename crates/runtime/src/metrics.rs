//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! `# HELP` and `# TYPE` once per family, then `name{label="value"} number`
//! lines. The daemons build their page with it on each scrape; nothing is
//! kept between scrapes.

use std::collections::HashSet;
use std::fmt::Write;

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metrics page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    declared: HashSet<String>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// A counter sample (declares the family on first use).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(Kind::Counter, name, help, labels, value);
    }

    /// A gauge sample (declares the family on first use).
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(Kind::Gauge, name, help, labels, value);
    }

    pub fn sample(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        if self.declared.insert(name.to_owned()) {
            let t = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(self.out, "# TYPE {name} {t}");
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// This process's resident set size in bytes (Linux `/proc/self/statm`).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| p * pages)
}

/// Process figures every daemon shows: start time and resident memory.
pub fn process(e: &mut Exposition, started_unix: u64) {
    e.gauge(
        "fdfs_process_start_time_seconds",
        "Unix time the process started.",
        &[],
        started_unix as f64,
    );
    if let Some(rss) = resident_bytes() {
        e.gauge(
            "fdfs_process_resident_memory_bytes",
            "Resident memory of the process.",
            &[],
            rss as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_declared_once_and_labels_escaped() {
        let mut e = Exposition::new();
        e.counter("fdfs_x_total", "Things.", &[("peer", "a\"b\\c")], 3.0);
        e.counter("fdfs_x_total", "Things.", &[("peer", "d")], 4.0);
        e.gauge("fdfs_y", "Line\nbreak.", &[], 0.5);
        assert_eq!(
            e.finish(),
            "# HELP fdfs_x_total Things.\n# TYPE fdfs_x_total counter\n\
             fdfs_x_total{peer=\"a\\\"b\\\\c\"} 3\nfdfs_x_total{peer=\"d\"} 4\n\
             # HELP fdfs_y Line\\nbreak.\n# TYPE fdfs_y gauge\nfdfs_y 0.5\n"
        );
    }

    #[test]
    fn our_resident_size_is_known() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
