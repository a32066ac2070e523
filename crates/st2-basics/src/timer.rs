//! A deadline that may be off, for `select!` loops whose timer branch is not always armed.

use tokio::time::Instant;

/// Sleeps until `at`, or forever without one (a `select!` branch that is off).
pub async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn it_wakes_at_the_deadline_and_never_without_one() {
        let start = Instant::now();
        sleep_until_some(Some(start + Duration::from_secs(5))).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let never = tokio::time::timeout(Duration::from_secs(3600), sleep_until_some(None)).await;
        assert!(never.is_err(), "no deadline sleeps past any timeout");
    }
}
