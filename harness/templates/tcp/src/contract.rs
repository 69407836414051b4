//! What the loader and the scenarios agree on, in one place.

/// The algorithm's name, as src/bpf/@NAME@.bpf.c sets it.
pub const ALGORITHM: &str = "@NAME@";
/// What `hold` prints once the algorithm is registered.
pub const HOLD_ATTACHED: &str = "attached";
/// The kernel's list of registered congestion controls.
pub const AVAILABLE_PATH: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";
/// The start of the verifier's reason for src/bpf/rejected.bpf.c.
pub const REJECTED_REASON: &str =
    "the verifier rejected rejected_init: no write support to tcp_sock at off ";

/// What `connect` prints: how often init and release ran for its one connection.
pub fn connect_report(init: u64, release: u64) -> String {
    format!("one connection with {ALGORITHM}: init ran {init} time(s), release {release}")
}
