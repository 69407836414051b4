//! What a TCP sender's `TCP_INFO` (`struct tcp_info`, include/uapi/linux/tcp.h)
//! says of its congestion control, as a loader reads it before the
//! connection closes (harness-loader's `tcp` module) and a scenario reads it
//! back from the loader's report: the window, the slow-start threshold, the
//! retransmissions, the congestion state and the round-trip time. A
//! subject's report embeds it with [`TcpInfo::render`] and
//! [`TcpInfo::from_numbers`], so both sides read one template.

/// The slow-start threshold of a connection that never reduced its window
/// (the kernel's TCP_INFINITE_SSTHRESH): below it, the congestion control's
/// `ssthresh` ran and the kernel applied what it returned.
pub const INITIAL_SSTHRESH: u32 = 0x7fff_ffff;

/// The sender's congestion state (`tcpi_ca_state`: the kernel's `TCP_CA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaState {
    /// TCP_CA_Open: nothing outstanding looks lost.
    Open,
    /// TCP_CA_Disorder: duplicate ACKs or SACKs, no loss decided yet.
    Disorder,
    /// TCP_CA_CWR: the window was reduced for ECN or a local congestion.
    Cwr,
    /// TCP_CA_Recovery: fast retransmit.
    Recovery,
    /// TCP_CA_Loss: a retransmission timeout.
    Loss,
    /// A value this harness does not know (a newer kernel's).
    Other(u8),
}

impl CaState {
    /// The state `tcpi_ca_state` holds.
    pub fn from_raw(raw: u8) -> Self {
        match raw {
            0 => CaState::Open,
            1 => CaState::Disorder,
            2 => CaState::Cwr,
            3 => CaState::Recovery,
            4 => CaState::Loss,
            other => CaState::Other(other),
        }
    }

    /// The value of `tcpi_ca_state`.
    pub fn raw(self) -> u8 {
        match self {
            CaState::Open => 0,
            CaState::Disorder => 1,
            CaState::Cwr => 2,
            CaState::Recovery => 3,
            CaState::Loss => 4,
            CaState::Other(raw) => raw,
        }
    }

    /// Its name without digits, which a report would read as numbers.
    pub fn name(self) -> &'static str {
        match self {
            CaState::Open => "open",
            CaState::Disorder => "disorder",
            CaState::Cwr => "cwr",
            CaState::Recovery => "recovery",
            CaState::Loss => "loss",
            CaState::Other(_) => "unknown",
        }
    }
}

/// The figures of a sender's `TCP_INFO` that tell what its congestion
/// control did; windows and thresholds are in segments of `snd_mss` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// `tcpi_snd_cwnd`: the congestion window.
    pub snd_cwnd: u32,
    /// `tcpi_snd_ssthresh`: the slow-start threshold ([`INITIAL_SSTHRESH`]
    /// until the window was first reduced).
    pub snd_ssthresh: u32,
    /// `tcpi_snd_mss`: the segment size, in bytes.
    pub snd_mss: u32,
    /// `tcpi_total_retrans`: segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// `tcpi_retransmits`: timeouts in a row on the oldest unacknowledged
    /// segment (0 once it is acknowledged).
    pub retransmits: u8,
    /// `tcpi_lost`: segments marked lost and not yet retransmitted.
    pub lost: u32,
    /// `tcpi_ca_state`: the congestion state.
    pub ca_state: CaState,
    /// `tcpi_rtt`: the smoothed round-trip time, in microseconds.
    pub rtt_us: u32,
    /// `tcpi_rttvar`: its variation, in microseconds.
    pub rttvar_us: u32,
}

impl TcpInfo {
    /// How many numbers [`TcpInfo::render`] writes.
    pub const NUMBERS: usize = 9;

    /// Whether the sender retransmitted anything: a loss (or what looked
    /// like one) made the congestion control react.
    pub fn retransmitted(&self) -> bool {
        self.total_retrans > 0
    }

    /// Whether the slow-start threshold left its initial value: the
    /// congestion control's `ssthresh` ran and its answer was applied.
    pub fn ssthresh_reduced(&self) -> bool {
        self.snd_ssthresh < INITIAL_SSTHRESH
    }

    /// `cwnd 10, ssthresh 7, mss 1448, total_retrans 3, retransmits 0,
    /// lost 0, ca_state 0 (open), rtt 10342 us, rttvar 2101 us`.
    pub fn render(&self) -> String {
        format!(
            "cwnd {}, ssthresh {}, mss {}, total_retrans {}, retransmits {}, lost {}, \
             ca_state {} ({}), rtt {} us, rttvar {} us",
            self.snd_cwnd,
            self.snd_ssthresh,
            self.snd_mss,
            self.total_retrans,
            self.retransmits,
            self.lost,
            self.ca_state.raw(),
            self.ca_state.name(),
            self.rtt_us,
            self.rttvar_us
        )
    }

    /// The figures back from the [`TcpInfo::NUMBERS`] numbers of
    /// [`TcpInfo::render`]'s line, in its order; `None` if one does not fit.
    pub fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [cwnd, ssthresh, mss, total, retransmits, lost, state, rtt, rttvar] =
            numbers.try_into().ok()?;
        let small = |value: u64| u32::try_from(value).ok();
        Some(TcpInfo {
            snd_cwnd: small(cwnd)?,
            snd_ssthresh: small(ssthresh)?,
            snd_mss: small(mss)?,
            total_retrans: small(total)?,
            retransmits: u8::try_from(retransmits).ok()?,
            lost: small(lost)?,
            ca_state: CaState::from_raw(u8::try_from(state).ok()?),
            rtt_us: small(rtt)?,
            rttvar_us: small(rttvar)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers_in(line: &str) -> Vec<u64> {
        line.split(|c: char| !c.is_ascii_digit())
            .filter_map(|word| word.parse().ok())
            .collect()
    }

    fn info(ssthresh: u32, total_retrans: u32) -> TcpInfo {
        TcpInfo {
            snd_cwnd: 12,
            snd_ssthresh: ssthresh,
            snd_mss: 1448,
            total_retrans,
            retransmits: 0,
            lost: 1,
            ca_state: CaState::Recovery,
            rtt_us: 10_342,
            rttvar_us: 2_101,
        }
    }

    #[test]
    fn the_rendered_figures_read_back_the_same() {
        for figures in [info(7, 3), info(INITIAL_SSTHRESH, 0)] {
            let numbers = numbers_in(&figures.render());
            assert_eq!(numbers.len(), TcpInfo::NUMBERS);
            assert_eq!(TcpInfo::from_numbers(&numbers), Some(figures));
        }
        assert_eq!(TcpInfo::from_numbers(&[1, 2, 3]), None);
        assert_eq!(TcpInfo::from_numbers(&[1, 2, 3, 4, 300, 6, 7, 8, 9]), None);
    }

    #[test]
    fn a_loss_shows_as_a_retransmission_and_a_lower_threshold() {
        let lossy = info(7, 3);
        assert!(lossy.retransmitted() && lossy.ssthresh_reduced());
        let clean = info(INITIAL_SSTHRESH, 0);
        assert!(!clean.retransmitted() && !clean.ssthresh_reduced());
    }

    #[test]
    fn every_state_keeps_its_value() {
        for raw in 0..=6 {
            assert_eq!(CaState::from_raw(raw).raw(), raw);
            assert!(!CaState::from_raw(raw)
                .name()
                .chars()
                .any(|c| c.is_ascii_digit()));
        }
        assert_eq!(CaState::from_raw(4), CaState::Loss);
    }
}
