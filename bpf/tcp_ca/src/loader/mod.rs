//! The loader of vmtest_reno, a BPF implementation of the kernel's own
//! `struct tcp_congestion_ops`. Its subcommands are the building blocks of
//! the tcp_ca scenarios; what they print and how they exit is
//! `crate::contract`. Every connection is on 127.0.0.1.

mod contract_cases;
mod ops;
mod skel;

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use harness::loader::tcp::{self as loopback, Connection, Options, SelectError};
use harness::loader::{self as blocks, Failure};
use libbpf_rs::OpenObject;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use self::ops::{self as tcp_ca, Registration, TcpCa};
use crate::contract::{
    self as contract, exit, Calls, ConnectReport, DetachWhileUsedReport, OnceReport, Report,
    TransferReport, ALGORITHM,
};

/// How long release may take to run after close(2): it runs when the socket
/// is destroyed, which a graceful close can leave to the softirq that
/// handles the last segment.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "Register vmtest_reno, a BPF tcp_congestion_ops, and use it over loopback")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach, print "attached", stay registered until SIGINT or SIGTERM, detach.
    Hold,
    /// Attach, run one connection with the algorithm carrying BYTES each
    /// way, close it, wait for release, report the calls, detach.
    Once {
        #[arg(long, default_value_t = 100_000)]
        bytes: u64,
    },
    /// Attach nothing: one connection that asks for the algorithm by name
    /// (exit 5 if setsockopt says ENOENT).
    Connect {
        #[arg(long, default_value_t = 100_000)]
        bytes: u64,
    },
    /// Attach, connect and transfer, detach while the connection is open,
    /// transfer again on it, check that a new socket gets ENOENT, close.
    DetachWhileUsed {
        #[arg(long, default_value_t = 100_000)]
        bytes: u64,
    },
    /// Attach, run one connection carrying BYTES each way in segments of at
    /// most MSS bytes, the client paced to PACING bytes a second, read the
    /// client's TCP_INFO, close it, wait for release, report the calls and
    /// the TCP_INFO, detach.
    Transfer {
        #[arg(long)]
        bytes: u64,
        #[arg(long)]
        mss: Option<u16>,
        #[arg(long)]
        pacing: Option<u64>,
        /// Up to N connections, one after another, until TCP has taken a
        /// reordering for a loss and undone its reaction (ssthresh and
        /// undo_cwnd ran): under TCG a connection may run in bursts for
        /// its whole life, and one in bursts may take no reordering for a
        /// loss (the scenario `tcp_ca_loss` says more).
        #[arg(long, default_value_t = 1)]
        until_undo: u32,
    },
    /// Load an implementation the verifier must refuse, and report why it did.
    LoadRejected,
    /// One case of the contract between tcp_congestion_ops and BPF implementations.
    Contract {
        #[arg(value_enum)]
        case: contract_cases::Case,
    },
}

/// A socket that could not select the algorithm: ENOENT is this loader's
/// own exit code (the scenarios expect it after a detach).
fn selected(err: SelectError) -> Failure {
    err.failure(exit::NOT_REGISTERED)
}

/// The loader's entry point: `args` are its command line, its name first.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let outcome = match Cli::parse_from(args).command {
        Command::Hold => run_hold(),
        Command::Once { bytes } => run_once(bytes),
        Command::Connect { bytes } => run_connect(bytes),
        Command::DetachWhileUsed { bytes } => run_detach_while_used(bytes),
        Command::Transfer {
            bytes,
            mss,
            pacing,
            until_undo,
        } => run_transfer(
            bytes,
            Options {
                max_segment: mss,
                max_pacing_rate: pacing,
            },
            until_undo,
        ),
        Command::LoadRejected => run_load_rejected(),
        Command::Contract { case } => contract_cases::run(case),
    };
    blocks::finish(outcome)
}

fn run_hold() -> Result<(), Failure> {
    // Before attaching, so that a signal sent as soon as "attached" is read
    // detaches cleanly instead of killing the process.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|err| anyhow::anyhow!("installing the SIGINT and SIGTERM handlers: {err}"))?;
    let mut storage = MaybeUninit::uninit();
    let (loaded, registration) = load_and_attach(&mut storage)?;
    signals.forever().next();
    loaded.report();
    drop(registration);
    println!("{}", contract::DETACHED);
    Ok(())
}

fn run_once(bytes: u64) -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let (tcp_ca, registration) = load_and_attach(&mut storage)?;
    let mut connection = Connection::open(ALGORITHM).map_err(selected)?;
    check_init_ran_for(&tcp_ca, &connection)?;
    connection.transfer(bytes)?;
    connection.close()?;
    let calls = wait_for_release(&tcp_ca)?;
    tcp_ca.report();
    drop(registration);
    println!("{}", contract::DETACHED);
    println!("{}", OnceReport { bytes, calls }.render());
    Ok(())
}

/// `once` with the client's TCP_INFO, read after the transfer and before
/// the close: what vmtest_reno made of the losses netem caused. Up to
/// `until_undo` connections, until ssthresh and undo_cwnd have run.
fn run_transfer(bytes: u64, options: Options, until_undo: u32) -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let (tcp_ca, registration) = load_and_attach(&mut storage)?;
    let mut connections = 0;
    let (calls, info) = loop {
        let mut connection = Connection::open_with(ALGORITHM, options).map_err(selected)?;
        check_init_ran_for(&tcp_ca, &connection)?;
        connection.transfer(bytes)?;
        let info = connection.info()?;
        connection.close()?;
        let calls = wait_for_release(&tcp_ca)?;
        connections += 1;
        let undone = calls.ssthresh > 0 && calls.undo_cwnd > 0;
        if undone || connections >= until_undo {
            break (calls, info);
        }
    };
    tcp_ca.report();
    drop(registration);
    println!("{}", contract::DETACHED);
    let report = TransferReport {
        bytes,
        connections: connections.into(),
        calls,
        info,
    };
    println!("{}", report.render());
    Ok(())
}

/// Loads vmtest_reno and registers it, then prints the line the scenarios
/// wait for.
fn load_and_attach(
    storage: &mut MaybeUninit<OpenObject>,
) -> Result<(TcpCa<'_>, Registration), Failure> {
    let mut tcp_ca = TcpCa::open_and_load(storage)?;
    let registration = tcp_ca.attach()?;
    println!("{}", contract::ATTACHED);
    Ok((tcp_ca, registration))
}

fn run_connect(bytes: u64) -> Result<(), Failure> {
    let mut connection = Connection::open(ALGORITHM).map_err(selected)?;
    connection.transfer(bytes)?;
    connection.close()?;
    println!("{}", ConnectReport { bytes }.render());
    Ok(())
}

fn run_detach_while_used(bytes: u64) -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let (tcp_ca, registration) = load_and_attach(&mut storage)?;
    let mut connection = Connection::open(ALGORITHM).map_err(selected)?;
    check_init_ran_for(&tcp_ca, &connection)?;
    connection.transfer(bytes)?;
    let pkts_acked_at_detach = tcp_ca.calls().pkts_acked;
    drop(registration);
    println!("{}", contract::DETACHED);
    connection
        .transfer(bytes)
        .map_err(|err| err.context("the open connection after the detach"))?;
    let pkts_acked_after = tcp_ca.calls().pkts_acked;
    check_name_gone()?;
    connection.close()?;
    let calls = wait_for_release(&tcp_ca)?;
    tcp_ca.report();
    let report = DetachWhileUsedReport {
        bytes,
        pkts_acked_at_detach,
        pkts_acked_after,
        init: calls.init,
        release: calls.release,
    };
    println!("{}", report.render());
    Ok(())
}

fn run_load_rejected() -> Result<(), Failure> {
    blocks::load_rejected(|| Ok(tcp_ca::load_rejected()?))
}

/// The init callback must have run for this connection's socket, which
/// shows that the socket really uses the BPF algorithm.
fn check_init_ran_for(tcp_ca: &TcpCa<'_>, connection: &Connection) -> Result<(), Failure> {
    let port = connection.local_port()?;
    let seen = tcp_ca.init_port();
    if seen == port {
        return Ok(());
    }
    Err(anyhow::anyhow!(
        "{ALGORITHM}'s init last ran for local port {seen}, but the connection's is {port}"
    )
    .into())
}

/// After the detach: the name has left the kernel's list, and a new socket
/// asking for it is refused with ENOENT.
fn check_name_gone() -> Result<(), Failure> {
    let available = std::fs::read_to_string(contract::AVAILABLE_PATH)
        .map_err(|err| anyhow::anyhow!("reading {}: {err}", contract::AVAILABLE_PATH))?;
    if contract::is_available(&available, ALGORITHM) {
        return Err(anyhow::anyhow!(
            "{ALGORITHM} is still listed after the detach: {}",
            available.trim_end()
        )
        .into());
    }
    match loopback::select(ALGORITHM) {
        Err(SelectError::NotRegistered(_)) => Ok(()),
        Err(SelectError::Other(err)) => Err(err.into()),
        Ok(_) => {
            Err(anyhow::anyhow!("a new socket still selected {ALGORITHM} after the detach").into())
        }
    }
}

/// Waits until the release callback has run once per init, which happens
/// when the last socket that used the algorithm is destroyed.
fn wait_for_release(tcp_ca: &TcpCa<'_>) -> Result<Calls, Failure> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        let calls = tcp_ca.calls();
        if calls.release >= calls.init {
            return Ok(calls);
        }
        if Instant::now() >= deadline {
            return Err(anyhow::anyhow!(
                "{ALGORITHM}'s release ran {} times within {RELEASE_TIMEOUT:?} of close, \
                 its init {} times",
                calls.release,
                calls.init
            )
            .into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}
