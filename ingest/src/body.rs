//! Reading a request body under the in-flight byte bound and a deadline.
//!
//! Key decision: byte permits are taken as bytes arrive, never reserved for a
//! declared `Content-Length`. A client that announces 8 MiB and then sends
//! nothing holds no memory and no permits, so a few dozen such clients can no
//! longer take the whole bound and lock every other client out. The deadline
//! ends a body that trickles in: whatever a slow client holds, it holds for at
//! most `--body-read-timeout-ms`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt as _;

use crate::budget::{Budget, Refused};

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body grew past the limit: refuse, the client must split it.
    TooLarge,
    /// The byte bound is full: the client retries after `Retry-After`.
    Overloaded(Refused),
    /// The body did not arrive within the deadline: the connection is closed.
    TimedOut,
    /// The connection failed or sent a broken framing; the cause's text
    /// (hyper's, never payload bytes).
    Read(String),
}

/// Reads `body` whole within `deadline`, charging `budget` one permit per
/// byte as each frame arrives; at most `limit` bytes.
///
/// # Errors
/// See [`BodyError`]; the permits taken so far stay with `budget`, which
/// the caller drops with its answer.
pub(crate) async fn read(
    body: Body,
    limit: usize,
    budget: &mut Budget,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    tokio::time::timeout(deadline, collect(body, limit, budget)).await.map_err(|_elapsed| BodyError::TimedOut)?
}

async fn collect(mut body: Body, limit: usize, budget: &mut Budget) -> Result<Bytes, BodyError> {
    // The frames are kept as they came (they share hyper's read buffer) and
    // joined once at the end: growing one buffer as they arrive would leave
    // every smaller copy behind in the allocator, about twice the body.
    let mut frames: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        // Trailers carry no body bytes.
        let Ok(data) = frame.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        if total + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        budget.charge(data.len()).map_err(BodyError::Overloaded)?;
        total += data.len();
        frames.push(data);
    }
    let joined = if frames.len() == 1 {
        frames.pop().unwrap_or_default()
    } else {
        // For a moment the body is held twice: charge the copy before it is
        // made, and give the frames' share back once they are gone.
        budget.charge(total).map_err(BodyError::Overloaded)?;
        let mut all = Vec::with_capacity(total);
        for f in frames.drain(..) {
            all.extend_from_slice(&f);
        }
        budget.release(total);
        Bytes::from(all)
    };
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_body_holds_one_permit_per_byte_until_its_budget_is_dropped() {
        let bytes = Arc::new(Semaphore::new(100));
        let mut budget = Budget::new(bytes.clone(), 100);
        let body = read(Body::from(vec![b'x'; 40]), 64, &mut budget, LONG).await.expect("fits");
        assert_eq!((body.len(), bytes.available_permits()), (40, 60));
        drop(budget);
        assert_eq!(bytes.available_permits(), 100);
        let mut budget = Budget::new(bytes.clone(), 100);
        let empty = read(Body::empty(), 64, &mut budget, LONG).await.expect("an empty body");
        assert_eq!((empty.len(), bytes.available_permits()), (0, 100));
    }

    #[tokio::test]
    async fn too_large_and_overloaded_give_every_permit_back() {
        let bytes = Arc::new(Semaphore::new(100));
        let mut budget = Budget::new(bytes.clone(), 100);
        let err = read(Body::from(vec![b'x'; 65]), 64, &mut budget, LONG).await.err();
        assert!(matches!(err, Some(BodyError::TooLarge)), "{err:?}");
        drop(budget);
        let _other = bytes.clone().try_acquire_many_owned(70).expect("permits");
        let mut budget = Budget::new(bytes.clone(), 100);
        let err = read(Body::from(vec![b'x'; 40]), 64, &mut budget, LONG).await.err();
        assert!(matches!(err, Some(BodyError::Overloaded(Refused::Full))), "{err:?}");
        drop(budget);
        assert_eq!(bytes.available_permits(), 30);
    }

    /// Frames are joined into one buffer: for that moment the body is held
    /// twice, and both copies must fit the bound.
    #[tokio::test]
    async fn joining_frames_is_charged_while_both_copies_exist() {
        let frames = || {
            let chunks = (0..2).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 30])));
            Body::from_stream(futures::stream::iter(chunks))
        };
        let bytes = Arc::new(Semaphore::new(128));
        let mut budget = Budget::new(bytes.clone(), 128);
        let body = read(frames(), 64, &mut budget, LONG).await.expect("60 + 60 fit 128");
        assert_eq!((body.len(), budget.held()), (60, 60), "after the join only the body is held");
        drop(budget);
        let _other = bytes.clone().try_acquire_many_owned(50).expect("permits");
        let mut budget = Budget::new(bytes.clone(), 128);
        let err = read(frames(), 64, &mut budget, LONG).await.err();
        assert!(matches!(err, Some(BodyError::Overloaded(Refused::Full))), "60 fit, the copy does not: {err:?}");
    }
}
