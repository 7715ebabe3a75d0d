//! A destination's guard state, plain values with no I/O: a breaker's state and what it
//! says to a send, and a rate limit's timeline and the slots it leases. The store keeps
//! them (`store`); `breaker` and `pace` act on them.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it first stays open.
    pub open: Duration,
    /// The longest it stays open, however long the destination keeps failing.
    pub cap: Duration,
    /// How long a message waits while another worker holds the probe.
    pub probe_wait: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            open: Duration::from_secs(30),
            cap: Duration::from_secs(900),
            probe_wait: Duration::from_secs(5),
        }
    }
}

/// An opening of a breaker: until `until_ms`, for `period_ms`, made on the state read
/// with `expected_until_ms` (a store refuses it if another worker changed that since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub expected_until_ms: u64,
    pub until_ms: u64,
    pub period_ms: u64,
}

/// A breaker's state, as kept in the store. `open_until_ms` 0 is closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerState {
    pub failures: u32,
    pub open_until_ms: u64,
    /// The last opening's length: the next one doubles it. 0 once closed.
    pub period_ms: u64,
    pub probe_until_ms: u64,
}

/// What a breaker says to a send, from its state alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Send,
    /// Open: wait this long.
    Wait(Duration),
    /// The opening ran out: a probe may go, if this worker gets it.
    Probe,
}

impl BreakerState {
    pub fn admission(&self, now_ms: u64) -> Admission {
        if self.open_until_ms == 0 {
            Admission::Send
        } else if now_ms < self.open_until_ms {
            Admission::Wait(Duration::from_millis(self.open_until_ms - now_ms))
        } else {
            Admission::Probe
        }
    }

    /// The opening that follows this state's failure, if it should open: the first for
    /// `settings.open`, each next one twice the last, up to the cap.
    pub fn next_opening(
        &self,
        now_ms: u64,
        probe: bool,
        settings: &BreakerSettings,
    ) -> Option<u64> {
        let open_or_ran_out = self.open_until_ms <= now_ms || probe;
        if self.failures < settings.failures || !open_or_ran_out {
            return None;
        }
        let cap = settings.cap.as_millis() as u64;
        Some(if self.period_ms == 0 {
            (settings.open.as_millis() as u64).min(cap)
        } else {
            self.period_ms.saturating_mul(2).min(cap)
        })
        .map(|p| p.max(1))
    }
}

/// What a gate let through: an ordinary send, or the one probe of a breaker that was open
/// (leased until `until_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Normal,
    Probe { until_ms: u64 },
}

/// What the store gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// `count` slots from `start_us` on, one interval apart.
    Granted { start_us: u64, count: u32 },
    /// None soon enough: the slot at `at_us` is kept for this send, to be taken by a send
    /// that asks again by then.
    Kept { at_us: u64 },
}

/// A request for send slots, at `now_us`: `count` slots `interval_us` apart, from the
/// earliest free one, if that is no later than `latest_start_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotAsk {
    pub now_us: u64,
    pub count: u32,
    pub interval_us: u64,
    pub latest_start_us: u64,
}

/// One destination's timeline, as a store keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The first slot after every slot leased or kept.
    pub next_us: u64,
    /// Slots kept for held-back messages: `kept` of them, one interval apart from
    /// `kept_from_us` on, the last of them just before `next_us`.
    pub kept: u32,
    pub kept_from_us: u64,
}

impl SlotAsk {
    /// The lease a store grants on `timeline`, and the timeline after it. One rule for
    /// every store. A kept slot is taken by whoever asks first within its reach (the
    /// message it was kept for comes back just before it); one more than an interval
    /// past is gone, as a leased one is. Blocks are leased only when no slot is kept, so
    /// kept slots stay one interval apart at the end of the timeline.
    pub fn lease_on(self, timeline: Timeline) -> (Lease, Timeline) {
        let mut t = timeline;
        let interval = self.interval_us.max(1);
        if t.kept > 0 && t.kept_from_us + interval <= self.now_us {
            let gone = ((self.now_us - t.kept_from_us) / interval).min(u64::from(t.kept));
            t.kept -= gone as u32;
            t.kept_from_us += gone * interval;
        }
        if t.kept > 0 {
            if t.kept_from_us <= self.latest_start_us {
                let start_us = t.kept_from_us;
                t.kept -= 1;
                t.kept_from_us += interval;
                return (Lease::Granted { start_us, count: 1 }, t);
            }
            let at_us = t.next_us;
            t.next_us += interval;
            t.kept += 1;
            return (Lease::Kept { at_us }, t);
        }
        let start_us = t.next_us.max(self.now_us);
        if start_us <= self.latest_start_us {
            t.next_us = start_us + u64::from(self.count) * interval;
            return (
                Lease::Granted {
                    start_us,
                    count: self.count,
                },
                t,
            );
        }
        t.kept = 1;
        t.kept_from_us = start_us;
        t.next_us = start_us + interval;
        (Lease::Kept { at_us: start_us }, t)
    }
}
