//! The `process_*` metrics every Prometheus client library exports (the names and units of
//! the Prometheus client guidelines, "Process metrics"), read from `/proc/self` at each
//! scrape. Linux only: elsewhere the page has none, as the guidelines allow.

/// The process metrics as Prometheus text, or nothing where `/proc` is not available.
pub fn prometheus_text() -> String {
    #[cfg(target_os = "linux")]
    {
        linux::sample().map(|s| s.text()).unwrap_or_default()
    }
    #[cfg(not(target_os = "linux"))]
    {
        String::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fmt::Write as _;

    /// One reading of the process's counters.
    pub(super) struct Sample {
        cpu_seconds: f64,
        resident_bytes: u64,
        virtual_bytes: u64,
        start_time_seconds: f64,
        open_fds: usize,
        max_fds: Option<u64>,
        threads: u64,
    }

    impl Sample {
        pub(super) fn text(&self) -> String {
            let mut out = String::new();
            let mut put = |name: &str, kind: &str, help: &str, value: String| {
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
                );
            };
            put(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds.to_string(),
            );
            put(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_bytes.to_string(),
            );
            put(
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                self.virtual_bytes.to_string(),
            );
            put(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds.to_string(),
            );
            put(
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                self.open_fds.to_string(),
            );
            if let Some(max) = self.max_fds {
                put(
                    "process_max_fds",
                    "gauge",
                    "Maximum number of open file descriptors.",
                    max.to_string(),
                );
            }
            put(
                "process_threads",
                "gauge",
                "Number of OS threads in the process.",
                self.threads.to_string(),
            );
            out
        }
    }

    /// Reads `/proc/self`; `None` when it cannot be read or parsed.
    pub(super) fn sample() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        // proc(5) numbers fields from 1 with the pid; `after` starts at field 3 (state).
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let ticks = clock_ticks()?;
        let (utime, stime) = (field(14)?, field(15)?);
        let start_ticks = field(22)?;
        let virtual_bytes = field(23)?;
        let rss_pages = field(24)?;
        let threads = field(20)?;
        let boot = boot_time()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_open_files(&l));
        Some(Sample {
            cpu_seconds: (utime + stime) as f64 / ticks as f64,
            resident_bytes: rss_pages * page_size()?,
            virtual_bytes,
            start_time_seconds: boot as f64 + start_ticks as f64 / ticks as f64,
            open_fds,
            max_fds,
            threads,
        })
    }

    /// The host's boot time (`btime` in `/proc/stat`), read at the first scrape that finds it:
    /// it never changes, and `/proc/stat` grows with the host's CPUs and interrupt lines.
    fn boot_time() -> Option<u64> {
        static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        if let Some(boot) = BOOT.get() {
            return Some(*boot);
        }
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        Some(*BOOT.get_or_init(|| boot))
    }

    /// The soft limit on open files from `/proc/self/limits`; `None` when unlimited.
    fn max_open_files(limits: &str) -> Option<u64> {
        limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn clock_ticks() -> Option<u64> {
        // SAFETY: sysconf only reads a system constant; it has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(ticks).ok().filter(|t| *t > 0)
    }

    fn page_size() -> Option<u64> {
        // SAFETY: as above.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(size).ok().filter(|s| *s > 0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_this_process() {
            let s = sample().expect("/proc/self readable");
            assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
            assert!(s.open_fds >= 3 && s.threads >= 1);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!(
                s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0,
                "{}",
                s.start_time_seconds
            );
            assert_eq!(
                max_open_files(
                    "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 1048576              files\n"
                ),
                Some(1024)
            );
        }
    }
}
