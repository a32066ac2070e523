//! Comparing one emulator reply with one st2 capture: status, the headers that matter, body
//! shape, and the body against st2's OpenAPI schema. Problems are collected, not thrown one by
//! one, so a failing test lists every divergence at once.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value;

use crate::capture::Recorded;
use crate::cases::Request;
use crate::client::Reply;
use crate::openapi::spec;
use crate::shape::{self, Rules};

/// Added by the HTTP stack per connection/body framing, not by st2: left out of the name check.
const TRANSPORT: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// Headers whose values are fixed (not per request) in st2's answers.
const SAME_VALUE: &[&str] = &[
    "content-type",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "cache-control",
    "x-accel-buffering",
    "x-limit",
];

/// Collected divergences for one test.
pub struct Check {
    name: String,
    problems: Vec<String>,
}

impl Check {
    /// Start collecting for `name` (usually the capture file or scenario).
    pub fn new(name: &str) -> Check {
        Check {
            name: name.to_string(),
            problems: Vec::new(),
        }
    }

    /// Record a problem unless `ok`.
    pub fn that(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(problem());
        }
    }

    /// Status, headers, body shape and schema of `reply` against capture `file`, which answered
    /// `request`; `path` is what was sent (for the schema lookup). `rules: None` leaves the body
    /// shape to the caller (lists of different catalogue entries).
    pub fn reply(
        &mut self,
        file: &str,
        request: &Request,
        path: &str,
        reply: &Reply,
        rules: Option<&Rules>,
    ) {
        let capture = Recorded::load(file).unwrap_or_else(|e| panic!("{e}"));
        let status = capture.status.unwrap_or(request.status);
        self.that(reply.status == status, || {
            format!(
                "{file}: status differs: st2 answered {status}, emulator {} (body {})",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )
        });
        if capture.status.is_some() {
            self.headers(&capture, reply);
        }
        let method = request.method;
        if capture.is_json() {
            let expected = capture.json().unwrap_or_else(|e| panic!("{e}"));
            match serde_json::from_slice::<Value>(&reply.body) {
                Ok(actual) => {
                    if let Some(rules) = rules {
                        self.shape(file, &expected, &actual, rules);
                    }
                    self.schema(method, path, reply.status, &actual);
                }
                Err(e) => self.problems.push(format!(
                    "{file}: emulator body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&reply.body)
                )),
            }
        }
    }

    /// Shape of `actual` against `expected`.
    pub fn shape(&mut self, what: &str, expected: &Value, actual: &Value, rules: &Rules) {
        let diffs = shape::compare(expected, actual, rules);
        if !diffs.is_empty() {
            self.problems.push(shape::render(what, &diffs, rules));
        }
    }

    /// `body` against the schema st2's spec declares for this method, path and status.
    pub fn schema(&mut self, method: &str, path: &str, status: u16, body: &Value) {
        match spec().check_response(method, path, status, body) {
            Ok(violations) if violations.is_empty() => {}
            Ok(violations) => self.problems.push(format!(
                "{method} {path} -> {status}: body breaks st2's OpenAPI schema:\n{}",
                violations
                    .iter()
                    .map(|v| format!("  - {v}\n"))
                    .collect::<String>()
            )),
            Err(e) => self
                .problems
                .push(format!("{method} {path} -> {status}: {e}")),
        }
    }

    /// The headers that matter, against the capture's head.
    pub fn headers(&mut self, capture: &Recorded, reply: &Reply) {
        let file = &capture.file;
        let names = |it: &mut dyn Iterator<Item = String>| -> BTreeSet<String> {
            it.filter(|n| !TRANSPORT.contains(&n.as_str())).collect()
        };
        let st2 = names(&mut capture.headers.iter().map(|(n, _)| n.to_ascii_lowercase()));
        let emu = names(&mut reply.headers.keys().map(|n| n.as_str().to_string()));
        for missing in st2.difference(&emu) {
            self.problems.push(format!(
                "{file}: header {missing} missing (st2 sends `{}`)",
                capture.header(missing).unwrap_or_default()
            ));
        }
        for extra in emu.difference(&st2) {
            self.problems.push(format!(
                "{file}: header {extra}: `{}` is sent, st2 does not send it here",
                reply.header(extra).unwrap_or_default()
            ));
        }
        for name in SAME_VALUE {
            if let (Some(want), Some(got)) = (capture.header(name), reply.header(name)) {
                self.that(want == got, || {
                    format!("{file}: header {name} differs: st2 `{want}`, emulator `{got}`")
                });
            }
        }
        if let Some(got) = reply.header("x-total-count") {
            self.that(got.parse::<u64>().is_ok(), || {
                format!("{file}: X-Total-Count `{got}` is not a count")
            });
        }
        if let Some(got) = reply.header("x-request-id") {
            let uuid =
                Regex::new("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
                    .expect("regex");
            self.that(uuid.is_match(got), || {
                format!("{file}: X-Request-Id `{got}` is not a uuid4 like st2's")
            });
        }
        if let Some(got) = reply.header("date") {
            let http_date =
                Regex::new(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
                    .expect("regex");
            self.that(http_date.is_match(got), || {
                format!("{file}: Date `{got}` is not an HTTP date")
            });
        }
        if let Some(got) = reply.header("x-api-url") {
            self.that(
                got.starts_with("http://") || got.starts_with("https://"),
                || format!("{file}: X-Api-Url `{got}` is not a URL"),
            );
        }
        if let (Some(want), Some(got)) = (capture.header("set-cookie"), reply.header("set-cookie"))
        {
            self.cookie(file, want, got);
        }
    }

    /// `auth-token=<token>; Max-Age=N; Path=/; expires=...; secure; HttpOnly; SameSite=lax`.
    fn cookie(&mut self, file: &str, want: &str, got: &str) {
        let attrs = |c: &str| -> Vec<(String, String)> {
            c.split("; ")
                .map(|part| match part.split_once('=') {
                    Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
                    None => (part.to_ascii_lowercase(), String::new()),
                })
                .collect()
        };
        let (w, g) = (attrs(want), attrs(got));
        let keys = |a: &[(String, String)]| a.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        self.that(keys(&w) == keys(&g), || {
            format!("{file}: Set-Cookie attributes differ: st2 `{want}`, emulator `{got}`")
        });
        let value = |a: &[(String, String)], k: &str| {
            a.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        for fixed in ["path", "samesite"] {
            self.that(value(&w, fixed) == value(&g, fixed), || {
                format!("{file}: Set-Cookie {fixed} differs: st2 `{want}`, emulator `{got}`")
            });
        }
        let max_age = value(&g, "max-age").and_then(|v| v.parse::<u64>().ok());
        self.that(max_age.is_some_and(|m| m > 0 && m <= 86_400), || {
            format!("{file}: Set-Cookie Max-Age must be the token's remaining seconds (1..=86400): `{got}`")
        });
        let cookie_date =
            Regex::new(r"^[A-Z][a-z]{2}, \d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2} GMT$")
                .expect("regex");
        self.that(value(&g, "expires").is_some_and(|d| cookie_date.is_match(&d)), || {
            format!("{file}: Set-Cookie expires must look like st2's `Thu, 26-Nov-2026 02:41:10 GMT`: `{got}`")
        });
    }

    /// Stop here (a later step cannot run), reporting every problem found so far.
    pub fn abort(&self, why: &str) -> ! {
        panic!(
            "{}: cannot go on: {why}\nproblems so far:\n{}",
            self.name,
            self.problems.join("\n")
        )
    }

    /// Panic with every problem found, if any.
    pub fn finish(self) {
        assert!(
            self.problems.is_empty(),
            "{}: {} contract problem(s):\n{}",
            self.name,
            self.problems.len(),
            self.problems.join("\n")
        );
    }
}

/// Rules for an Execution document at `at` (`$` or `$[]`) produced by the same action and
/// parameters as st2's: the action and runner metadata, the parameters and the liveaction
/// mirror must be equal, only generated ids, timestamps and runner host data may differ.
pub fn same_execution(at: &str) -> Rules {
    Rules::default()
        .fixed(&format!("{at}.action.*"))
        .free(
            &format!("{at}.action.id"),
            "ObjectId generated at registration",
        )
        .fixed(&format!("{at}.runner.*"))
        .free(
            &format!("{at}.runner.id"),
            "ObjectId generated at registration",
        )
        .fixed(&format!("{at}.parameters"))
        .fixed(&format!("{at}.liveaction.action"))
        .fixed(&format!("{at}.liveaction.parameters"))
}

/// Rules for a catalogue document (action, pack, runner) that is the same entity as st2's.
pub fn same_entity() -> Rules {
    Rules::default()
        .fixed("$.*")
        .free("$.id", "ObjectId generated at registration")
}
