//! The outbox relay as a Lambda function: invoked by the log table's DynamoDB stream (any change
//! is only a wake-up call; the records are not read) and by a schedule as a backstop, it puts
//! everything committed after its checkpoint on the Kinesis stream and releases its lease.
//!
//! One relay works at a time. An invocation that finds the lease held waits up to a lease's
//! length for it: the holder may be about to release it with a commit it did not see, which
//! this invocation was woken for.

use std::time::{Duration, Instant};

use event_stream::relay::{Relay, Step};

/// Relays until caught up; how many events were put.
pub async fn drain(relay: &Relay) -> Result<usize, event_stream::StreamError> {
    let mut relayed = 0;
    let deadline = Instant::now() + relay.lease_duration() + Duration::from_secs(1);
    loop {
        match relay.step().await? {
            Step::Relayed(count) => relayed += count,
            Step::CaughtUp => {
                relay.release().await?;
                return Ok(relayed);
            }
            Step::NotHolder if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Step::NotHolder => return Ok(relayed),
        }
    }
}
