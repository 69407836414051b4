//! What the `tcp_ca` loader and the scenarios that run it agree on: the
//! algorithm's name, its exit codes, the lines it prints that a scenario
//! waits for, and its reports, each rendered and parsed by one type (the
//! harness's [`Report`] trait).
//!
//! `tcp_ca` attaches vmtest_reno, a BPF implementation of the kernel's own
//! `struct tcp_congestion_ops`; attaching registers it as a TCP congestion
//! control, which needs no module.

pub use harness::Report;
use harness::TcpInfo;

/// The algorithm's name: what `TCP_CONGESTION` selects and what
/// [`AVAILABLE_PATH`] lists while it is attached. `src/bpf/tcp_ca.bpf.c`
/// sets it; the loader refuses an object whose name differs.
pub const ALGORITHM: &str = "vmtest_reno";

/// The kernel's list of registered congestion controls, space-separated.
pub const AVAILABLE_PATH: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";

/// Whether the contents of [`AVAILABLE_PATH`] name `algorithm`.
pub fn is_available(available: &str, algorithm: &str) -> bool {
    available.split_whitespace().any(|name| name == algorithm)
}

/// The loader's exit codes: the ones every loader shares, named for this
/// one, and one of its own.
pub mod exit {
    pub use harness::exit::{FAILURE, REJECTED_BY_VERIFIER, SUCCESS};
    /// The kernel has no BPF `tcp_congestion_ops` (it needs CONFIG_INET,
    /// CONFIG_BPF_JIT and BTF).
    pub const UNSUPPORTED: u8 = harness::exit::UNAVAILABLE;
    /// `setsockopt(TCP_CONGESTION)` said ENOENT: no algorithm of that name
    /// is registered.
    pub const NOT_REGISTERED: u8 = 5;
    /// Registering failed with EEXIST: an algorithm of that name is registered.
    pub const ALREADY_REGISTERED: u8 = harness::exit::ALREADY_ATTACHED;
}

/// Printed once the algorithm is registered (`hold`, `once`, `detach-while-used`).
pub const ATTACHED: &str = "attached";
/// Printed once the link is destroyed and the algorithm unregistered.
pub const DETACHED: &str = "detached";

/// The program of `tcp_ca_rejected.bpf.c` the verifier refuses, and the
/// start of its reason; the reason ends with the offset of snd_cwnd_clamp in
/// the running kernel's struct tcp_sock. (7.x follows it with the
/// verifier's own `R1 cannot write into ptr_tcp_sock at off=N size=4`; the
/// reason is the first line after the instructions, on both.)
pub const REJECTED_PROGRAM: &str = "vmtest_clamp_init";
pub const REJECTED_REASON_PREFIX: &str = "no write support to tcp_sock at off ";

/// How many times each callback of vmtest_reno ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub init: u64,
    pub release: u64,
    pub ssthresh: u64,
    pub cong_avoid: u64,
    pub undo_cwnd: u64,
    pub set_state: u64,
    pub cwnd_event: u64,
    pub in_ack_event: u64,
    pub pkts_acked: u64,
}

impl Calls {
    fn from_numbers(numbers: [u64; 9]) -> Self {
        let [init, release, ssthresh, cong_avoid, undo_cwnd, set_state, cwnd_event, in_ack_event, pkts_acked] =
            numbers;
        Calls {
            init,
            release,
            ssthresh,
            cong_avoid,
            undo_cwnd,
            set_state,
            cwnd_event,
            in_ack_event,
            pkts_acked,
        }
    }

    fn render(&self) -> String {
        format!(
            "init {}, release {}, ssthresh {}, cong_avoid {}, undo_cwnd {}, set_state {}, \
             cwnd_event {}, in_ack_event {}, pkts_acked {}",
            self.init,
            self.release,
            self.ssthresh,
            self.cong_avoid,
            self.undo_cwnd,
            self.set_state,
            self.cwnd_event,
            self.in_ack_event,
            self.pkts_acked
        )
    }
}

/// `tcp_ca once`: one connection with vmtest_reno, closed, its release seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnceReport {
    /// Bytes sent and echoed back, each way.
    pub bytes: u64,
    pub calls: Calls,
}

impl Report for OnceReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let (&bytes, calls) = numbers.split_first()?;
        Some(OnceReport {
            bytes,
            calls: Calls::from_numbers(calls.try_into().ok()?),
        })
    }
    fn render(&self) -> String {
        format!(
            "{ALGORITHM} carried {} bytes each way and the connection closed; calls: {}",
            self.bytes,
            self.calls.render()
        )
    }
}

/// `tcp_ca connect`: a connection that asked for vmtest_reno by name got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectReport {
    pub bytes: u64,
}

impl Report for ConnectReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [bytes] = numbers.try_into().ok()?;
        Some(ConnectReport { bytes })
    }
    fn render(&self) -> String {
        format!(
            "a connection with {ALGORITHM} carried {} bytes each way",
            self.bytes
        )
    }
}

/// `tcp_ca detach-while-used`: detached while a connection used it. The
/// loader prints it only when, after the detach, the algorithm had left
/// [`AVAILABLE_PATH`] and a new socket asking for it got ENOENT; it fails
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachWhileUsedReport {
    /// Bytes each way before the detach, and again after it on the same socket.
    pub bytes: u64,
    /// pkts_acked calls when the link was destroyed, and once the second
    /// transfer was done: more after than at the detach means the socket
    /// still ran vmtest_reno's callbacks.
    pub pkts_acked_at_detach: u64,
    pub pkts_acked_after: u64,
    /// Calls of init and release over the whole run, release after close.
    pub init: u64,
    pub release: u64,
}

impl Report for DetachWhileUsedReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [bytes, pkts_acked_at_detach, pkts_acked_after, init, release] =
            numbers.try_into().ok()?;
        Some(DetachWhileUsedReport {
            bytes,
            pkts_acked_at_detach,
            pkts_acked_after,
            init,
            release,
        })
    }
    fn render(&self) -> String {
        format!(
            "{ALGORITHM} detached while a connection used it: {} bytes each way before and after, \
             pkts_acked {} at the detach and {} after; it left the available list and a new \
             socket got ENOENT; init {}, release {}",
            self.bytes, self.pkts_acked_at_detach, self.pkts_acked_after, self.init, self.release
        )
    }
}

/// `tcp_ca transfer`: one connection with vmtest_reno through whatever
/// the scenario put on loopback (netem's loss and delay), closed, its
/// release seen; with the client's TCP_INFO as it was before the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferReport {
    /// Bytes sent and echoed back, each way, in each connection.
    pub bytes: u64,
    /// How many connections ran, one after another (see `--until-undo`).
    pub connections: u64,
    /// Every connection's, added up.
    pub calls: Calls,
    /// The last client's (the sender's) TCP_INFO after its transfer.
    pub info: TcpInfo,
}

impl Report for TransferReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let (&bytes, rest) = numbers.split_first()?;
        let (&connections, rest) = rest.split_first()?;
        if rest.len() != 9 + TcpInfo::NUMBERS {
            return None;
        }
        let (calls, info) = rest.split_at(9);
        Some(TransferReport {
            bytes,
            connections,
            calls: Calls::from_numbers(calls.try_into().ok()?),
            info: TcpInfo::from_numbers(info)?,
        })
    }
    fn render(&self) -> String {
        format!(
            "{ALGORITHM} carried {} bytes each way in each of {} connections; calls: {}; the \
             last sender's TCP_INFO before close: {}",
            self.bytes,
            self.connections,
            self.calls.render(),
            self.info.render()
        )
    }
}

/// What `tcp_ca contract CASE` prints, step by step (through
/// `harness::case`), and the words of each step.
pub mod case {
    /// The name both of contract.bpf.c's switchable implementations register.
    pub const UPDATE_ALGORITHM: &str = "vmtest_update";
    pub const ATTACHED_1: &str = "ca_update_1 attached, 1 connection";
    pub const UPDATED_2: &str = "the link updated to ca_update_2, 1 connection";
    pub const UPDATE_UNLINKED: &str = "the link updated to ca_unlinked, a map without a link";
    pub const AFTER_REFUSED: &str = "after the refused update, 1 connection";
    pub const REPLACE_WRONG_OLD: &str =
        "ca_update_2 replaced by ca_update_1, naming ca_update_1 as the old map";
    pub const REPLACE_RIGHT_OLD: &str =
        "ca_update_2 replaced by ca_update_1, naming ca_update_2 as the old map";
    pub const REPLACED_1: &str = "after the replace, 1 connection";
    pub const DETACHED: &str = "the link detached";
    pub const CONNECT_DETACHED: &str = "a connection asking for vmtest_update";
    pub const ATTACHED_AGAIN: &str = "ca_update_1 attached again, 1 connection";
    pub const ATTACH_INCOMPLETE: &str =
        "attaching ca_incomplete, which has no ssthresh and no undo_cwnd";
    pub const LOAD_UNSUPPORTED: &str = "loading ca_unsupported, a program for get_info";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls() -> Calls {
        Calls::from_numbers([1, 1, 0, 40, 0, 0, 1, 75, 70])
    }

    #[test]
    fn the_name_has_no_digit_that_a_report_would_read_as_a_number() {
        assert!(!ALGORITHM.chars().any(|c| c.is_ascii_digit()));
        assert!(ALGORITHM.len() < 16, "TCP_CA_NAME_MAX is 16 with the NUL");
    }

    #[test]
    fn every_report_round_trips() {
        let once = OnceReport {
            bytes: 100_000,
            calls: calls(),
        };
        assert_eq!(OnceReport::find_in(&once.render()), Some(once));
        let connect = ConnectReport { bytes: 4096 };
        assert_eq!(ConnectReport::find_in(&connect.render()), Some(connect));
        let detach = DetachWhileUsedReport {
            bytes: 65536,
            pkts_acked_at_detach: 20,
            pkts_acked_after: 41,
            init: 1,
            release: 1,
        };
        assert_eq!(
            DetachWhileUsedReport::find_in(&detach.render()),
            Some(detach)
        );
        let transfer = TransferReport {
            bytes: 4_000_000,
            connections: 2,
            calls: calls(),
            info: TcpInfo {
                snd_cwnd: 9,
                snd_ssthresh: 6,
                snd_mss: 1448,
                total_retrans: 41,
                retransmits: 0,
                lost: 0,
                ca_state: harness::CaState::Open,
                rtt_us: 10_512,
                rttvar_us: 900,
            },
        };
        assert_eq!(TransferReport::find_in(&transfer.render()), Some(transfer));
        assert_eq!(OnceReport::find_in(&transfer.render()), None);
    }

    #[test]
    fn a_report_is_found_among_the_other_lines() {
        let once = OnceReport {
            bytes: 10,
            calls: calls(),
        };
        let output = format!("{ATTACHED}\n{DETACHED}\n{}\n", once.render());
        assert_eq!(OnceReport::find_in(&output), Some(once));
        assert_eq!(ConnectReport::find_in(&output), None);
    }

    #[test]
    fn the_available_list_is_matched_by_whole_names() {
        assert!(is_available("reno cubic vmtest_reno\n", ALGORITHM));
        assert!(!is_available("reno cubic vmtest_reno_old\n", ALGORITHM));
        assert!(!is_available("", ALGORITHM));
    }
}
