//! The race kernel (`--race-kernel`, KCSAN) sees the data race the others
//! cannot: the module built with a plain counter that concurrent triggers
//! update, read as a trigger starts and written as it ends
//! (`PLANT_DATA_RACE`), run through `trigger_storm` (triggers from 4
//! threads for 2 s, nothing attached), must fail naming the race;
//! the default kernel passes the same module blind. The nextest setup
//! script `race-kernel` builds that kernel first. `.ci/run` leaves this
//! binary out, so that a cold run builds two kernels at most; the GitHub
//! workflow's race job runs it.

mod common;

use harness::host::kernel::Flavour;

/// KCSAN samples accesses (one in 100 in a scenario that hunts races, see
/// `DENSE_SKIP_WATCH`), so a run may miss the race. The test runs
/// `trigger_storm` until one reports it, 20 times at most; its output says
/// how many runs that took.
#[test]
fn race_kernel_catches_a_data_race_on_a_plain_counter() {
    common::assert_caught_within(
        20,
        Flavour::Race,
        "PLANT_DATA_RACE",
        "trigger_storm",
        "data race (KCSAN)",
        "BUG: KCSAN: data-race in",
    );
}
