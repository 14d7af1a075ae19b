//! A poll batch: wait up to 100 ms for the first record, then at most
//! `linger` for more (the caller bounds the count).

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::message::BorrowedMessage;
use std::time::{Duration, Instant};

const FIRST_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Window {
    linger: Duration,
    deadline: Option<Instant>,
}

impl Window {
    pub fn new(linger: Duration) -> Self {
        Self { linger, deadline: None }
    }

    /// The next record of this batch, or `None` when the window closed.
    /// Consumer errors are logged (with `who`) and skipped.
    pub fn next<'c, C: ConsumerContext>(&mut self, c: &'c BaseConsumer<C>, who: &'static str) -> Option<BorrowedMessage<'c>> {
        loop {
            // Whole milliseconds: rdkafka's poll keeps polling until its
            // timeout is used up, with a zero wait for the last fraction of
            // a millisecond (a spin). Under a millisecond left, it takes
            // only what is already fetched.
            let wait = match self.deadline {
                None => FIRST_WAIT,
                Some(d) => Duration::from_millis(d.saturating_duration_since(Instant::now()).as_millis() as u64),
            };
            match c.poll(wait)? {
                Ok(m) => {
                    self.deadline.get_or_insert_with(|| Instant::now() + self.linger);
                    return Some(m);
                }
                Err(e) => tracing::warn!(error = %e, consumer = who, "consumer error"),
            }
        }
    }
}
