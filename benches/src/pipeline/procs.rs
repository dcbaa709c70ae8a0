//! CPU time and memory of a running process, from `/proc` (Linux).
//!
//! Key decision: the harness samples `/proc/PID/stat` and `/proc/PID/status`
//! rather than asking the services, so the figures hold for any process
//! (Tansu included) and cost the measured process nothing. `VmHWM` is the
//! kernel's own peak resident set, so a peak between two samples still counts.

use std::fs;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set now, bytes.
    pub rss_bytes: u64,
    /// Peak resident set so far (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
}

/// Reads `pid`; `None` once it has exited (or on a kernel without `/proc`).
pub fn sample(pid: u32, ticks_per_s: f64) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let cpu_ticks = cpu_ticks(&stat)?;
    Some(ProcSample {
        cpu_s: cpu_ticks as f64 / ticks_per_s,
        rss_bytes: status_kib(&status, "VmRSS:")? * 1024,
        peak_rss_bytes: status_kib(&status, "VmHWM:")? * 1024,
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// from after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100 when
/// `getconf` is missing, the value on every Linux architecture Tidemark runs on).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 12345 1000 200";
        assert_eq!(cpu_ticks(stat), Some(325));
    }

    #[test]
    fn this_process_reads_back() {
        let s = sample(std::process::id(), ticks_per_second()).expect("own /proc entry");
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes, "{s:?}");
        assert_eq!(status_kib("VmHWM:\t  1234 kB\n", "VmHWM:"), Some(1234));
    }
}
