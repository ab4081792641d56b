//! CPU time per message, of the server and of the benchmark's own clients.
//!
//! On a small machine the server and the clients that load it share the
//! cores, so a throughput ratio also measures how much CPU each system's
//! clients need. CPU seconds per message, the server's and the clients'
//! apart, say what each side costs, and they move less from one machine
//! kind to another than a rate does.

use crate::servers::Server;
use crate::stats::Outcome;

/// Linux reports process times in `USER_HZ` ticks, 100 per second on every
/// architecture this runs on (it is part of the `/proc` ABI, whatever the
/// kernel's own tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds from the text of `/proc/<pid>/stat`, every
/// thread included. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from its closing parenthesis.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// CPU seconds of `/proc/<entry>`: a pid, or `self`.
fn process_cpu(entry: &str) -> Option<f64> {
    cpu_seconds(&std::fs::read_to_string(format!("/proc/{entry}/stat")).ok()?)
}

fn server_cpu(server: &Server) -> Option<f64> {
    process_cpu(&server.pid()?.to_string())
}

/// CPU seconds of the server and of this process, from a starting point.
pub struct CpuMeter {
    server: Option<f64>,
    clients: Option<f64>,
}

impl CpuMeter {
    /// Starts counting now.
    pub fn start(server: &Server) -> Self {
        Self { server: server_cpu(server), clients: process_cpu("self") }
    }

    /// Fills in `outcome`'s CPU per item, `items` having been carried since
    /// [`CpuMeter::start`]. Left empty where `/proc` cannot tell.
    pub fn finish(self, server: &Server, items: u64, outcome: &mut Outcome) {
        let per_item = |start: Option<f64>, end: Option<f64>| {
            let used = end? - start?;
            (items > 0).then(|| (used / items as f64 * 1e7).round() / 10.0)
        };
        outcome.server_cpu_us = per_item(self.server, server_cpu(server));
        outcome.client_cpu_us = per_item(self.clients, process_cpu("self"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_times_are_read_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 100 0";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        assert_eq!(cpu_seconds("4242 (cut short) S 1 2"), None);
        assert_eq!(cpu_seconds("no name here"), None);
    }
}
