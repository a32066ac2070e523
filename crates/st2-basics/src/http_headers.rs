//! Reading what a server asks of its callers.

use std::time::Duration;

use http::HeaderMap;
use http::header::RETRY_AFTER;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// `Retry-After` in `headers` as a duration: seconds, or an HTTP date (a date in the past
/// gives zero).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    Some(Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, v.parse().unwrap());
        h
    }

    #[test]
    fn seconds_and_http_dates_are_read_and_garbage_is_not() {
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        let soon = (OffsetDateTime::now_utc() + time::Duration::seconds(2))
            .format(&Rfc2822)
            .unwrap();
        let wait = retry_after(&headers(&soon)).unwrap();
        assert!(wait <= Duration::from_secs(2), "{wait:?}");
        let http_date = soon.replace("+0000", "GMT");
        assert!(retry_after(&headers(&http_date)).is_some(), "{http_date}");
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
