//! Polling with a deadline, for every wait on an outside process.

use std::time::{Duration, Instant};

/// What a poll found.
pub enum Poll<T> {
    /// Done, with this value.
    Ready(T),
    /// Not yet; poll again.
    Pending,
}

/// Calls `poll` until it is ready or `deadline` passes (then `None`).
/// `poll` returns errors as values so the caller decides what is fatal.
pub fn wait_until<T>(
    deadline: Instant,
    interval: Duration,
    mut poll: impl FnMut() -> Poll<T>,
) -> Option<T> {
    loop {
        if let Poll::Ready(value) = poll() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_ready() {
        let mut calls = 0;
        let value = wait_until(
            Instant::now() + Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                calls += 1;
                if calls == 3 {
                    Poll::Ready(calls)
                } else {
                    Poll::Pending
                }
            },
        );
        assert_eq!(value, Some(3));
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let start = Instant::now();
        let value: Option<()> = wait_until(
            start + Duration::from_millis(50),
            Duration::from_millis(5),
            || Poll::Pending,
        );
        assert_eq!(value, None);
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
