//! The API areas, one handle per area (`client.executions()`, `client.actions()`, ...), and
//! the list builder they share.

pub mod actions;
pub mod executions;
pub mod keys;
pub mod packs;
pub mod traces;
pub mod triggertypes;
pub mod webhooks;

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use super::client::{ApiRequest, St2Client};
use super::error::St2Error;

/// A page of a list call, with st2's pagination headers.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items on this page (or on every page walked, for [`List::all`]).
    pub items: Vec<T>,
    /// `X-Total-Count`: how many match the filters in all.
    pub total_count: Option<u64>,
    /// `X-Limit`: the page size st2 applied.
    pub limit: Option<u64>,
    /// Position of the first item among all matches.
    pub offset: u64,
}

impl<T> Page<T> {
    /// Whether st2 holds matches after these items (by `X-Total-Count`).
    pub fn has_more(&self) -> bool {
        self.total_count
            .is_some_and(|total| self.offset + (self.items.len() as u64) < total)
    }
}

/// A list request on a paginated st2 route (`GET /executions`, `/traces`, `/packs`).
/// Filters specific to a route are methods on `List<'_, ThatModel>`.
#[must_use = "a list does nothing until `send` or `all` is awaited"]
pub struct List<'a, T> {
    client: &'a St2Client,
    segments: &'static [&'static str],
    query: Vec<(&'static str, String)>,
    offset: u64,
    refusal: Option<String>,
    item: PhantomData<fn() -> T>,
}

impl<'a, T: DeserializeOwned> List<'a, T> {
    pub(crate) fn new(client: &'a St2Client, segments: &'static [&'static str]) -> Self {
        Self {
            client,
            segments,
            query: Vec::new(),
            offset: 0,
            refusal: None,
            item: PhantomData,
        }
    }

    /// Sets query parameter `key`, replacing an earlier value.
    pub(crate) fn set(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.retain(|(k, _)| *k != key);
        self.query.push((key, value.into()));
        self
    }

    /// Keeps the list from being sent, for a reason found while building it.
    pub(crate) fn refuse(mut self, reason: String) -> Self {
        self.refusal.get_or_insert(reason);
        self
    }

    /// Page size. st2's default and its maximum for non-admins is 100 (more gives 403).
    pub fn limit(self, limit: u32) -> Self {
        self.set("limit", limit.to_string())
    }

    /// Skip this many matches.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    fn request(&self) -> ApiRequest {
        let mut req =
            ApiRequest::get(self.segments.iter().copied()).queries(self.query.iter().cloned());
        if self.offset > 0 {
            req = req.query("offset", self.offset.to_string());
        }
        match &self.refusal {
            Some(reason) => req.refuse(reason.clone()),
            None => req,
        }
    }

    /// Fetches one page.
    pub async fn send(&self) -> Result<Page<T>, St2Error> {
        let answer = self.client.send(self.request()).await?;
        Ok(Page {
            items: answer.json()?,
            total_count: answer.header_u64("x-total-count"),
            limit: answer.header_u64("x-limit"),
            offset: self.offset,
        })
    }

    /// Walks pages by offset until `X-Total-Count` is reached, a page comes back short, or
    /// `max_pages` pages were read; [`Page::has_more`] tells whether the bound cut it short.
    ///
    /// Offset paging over a list that grows underneath shifts items between pages; for a
    /// stable walk over executions, filter with a timestamp bound and an explicit order.
    pub async fn all(mut self, max_pages: usize) -> Result<Page<T>, St2Error> {
        let start = self.offset;
        let mut walked = Page {
            items: Vec::new(),
            total_count: None,
            limit: None,
            offset: start,
        };
        for _ in 0..max_pages {
            let page = self.send().await?;
            let got = page.items.len() as u64;
            walked.items.extend(page.items);
            walked.total_count = page.total_count;
            walked.limit = page.limit;
            let seen = start + walked.items.len() as u64;
            if got == 0
                || page.limit.is_some_and(|l| got < l)
                || page.total_count.is_some_and(|t| seen >= t)
            {
                break;
            }
            self.offset = seen;
        }
        Ok(walked)
    }
}
