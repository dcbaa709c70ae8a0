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
use tokio::sync::{Semaphore, SemaphorePermit};

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body grew past the limit: refuse, the client must split it.
    TooLarge,
    /// The byte bound is full: the client retries after `Retry-After`.
    Overloaded,
    /// The body did not arrive within the deadline: the connection is closed.
    TimedOut,
    /// The connection failed or sent a broken framing; the cause's text
    /// (hyper's, never payload bytes).
    Read(String),
}

/// A whole body and the byte permits that account for it; the permits go
/// back when this is dropped, after the request was answered.
pub(crate) struct HeldBody<'a> {
    /// The body's bytes.
    pub(crate) bytes: Bytes,
    /// One permit per byte of `bytes` (none for an empty body).
    _permits: Option<SemaphorePermit<'a>>,
}

/// Reads `body` whole within `deadline`, taking one permit of `bytes` per
/// byte as each frame arrives; at most `limit` bytes.
///
/// # Errors
/// See [`BodyError`]; every permit taken so far is returned on an error.
pub(crate) async fn read<'a>(
    body: Body,
    limit: usize,
    bytes: &'a Semaphore,
    deadline: Duration,
) -> Result<HeldBody<'a>, BodyError> {
    tokio::time::timeout(deadline, collect(body, limit, bytes)).await.map_err(|_elapsed| BodyError::TimedOut)?
}

async fn collect(mut body: Body, limit: usize, bytes: &Semaphore) -> Result<HeldBody<'_>, BodyError> {
    // The frames are kept as they came (they share hyper's read buffer) and
    // joined once at the end: growing one buffer as they arrive would leave
    // every smaller copy behind in the allocator, about twice the body.
    let mut frames: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    let mut held: Option<SemaphorePermit<'_>> = None;
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
        // A frame is never larger than the limit, which start-up keeps within
        // the semaphore's range; `u32::MAX` only makes an impossible frame fail.
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let permit = bytes.try_acquire_many(n).map_err(|_full| BodyError::Overloaded)?;
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        total += data.len();
        frames.push(data);
    }
    let joined = if frames.len() == 1 {
        frames.pop().unwrap_or_default()
    } else {
        let mut all = Vec::with_capacity(total);
        for f in frames.drain(..) {
            all.extend_from_slice(&f);
        }
        Bytes::from(all)
    };
    Ok(HeldBody { bytes: joined, _permits: held })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_body_holds_one_permit_per_byte_until_it_is_dropped() {
        let bytes = Semaphore::new(100);
        let held = read(Body::from(vec![b'x'; 40]), 64, &bytes, LONG).await.expect("fits");
        assert_eq!((held.bytes.len(), bytes.available_permits()), (40, 60));
        drop(held);
        assert_eq!(bytes.available_permits(), 100);
        let empty = read(Body::empty(), 64, &bytes, LONG).await.expect("an empty body");
        assert_eq!((empty.bytes.len(), bytes.available_permits()), (0, 100));
    }

    #[tokio::test]
    async fn too_large_and_overloaded_give_every_permit_back() {
        let bytes = Semaphore::new(100);
        let err = read(Body::from(vec![b'x'; 65]), 64, &bytes, LONG).await.err();
        assert!(matches!(err, Some(BodyError::TooLarge)), "{err:?}");
        let _other = bytes.try_acquire_many(70).expect("permits");
        let err = read(Body::from(vec![b'x'; 40]), 64, &bytes, LONG).await.err();
        assert!(matches!(err, Some(BodyError::Overloaded)), "{err:?}");
        assert_eq!(bytes.available_permits(), 30);
    }
}
