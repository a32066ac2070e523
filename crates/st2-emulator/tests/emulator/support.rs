//! Helpers for the emulator's HTTP tests: a started emulator, an authenticated client and an SSE
//! reader that waits for events instead of sleeping.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use st2_emulator::{Emulator, EmulatorOptions};

use crate::fixture::started;

pub const KEY: &str = "emulator-api-key";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Harness {
    pub emu: Emulator,
    pub http: reqwest::Client,
}

pub async fn start() -> Harness {
    start_with(EmulatorOptions {
        step: Duration::from_millis(10),
        ..EmulatorOptions::default()
    })
    .await
}

pub async fn start_with(options: EmulatorOptions) -> Harness {
    let (emu, http) = started(options, Duration::from_secs(20)).await;
    Harness { emu, http }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.emu.base_url(), path)
    }

    /// A request authenticated with the API key.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("St2-Api-Key", KEY)
    }

    /// The status of an authenticated request without a body.
    pub async fn status(&self, method: Method, path: &str) -> u16 {
        let r = self.req(method, path).send().await.expect("request");
        r.status().as_u16()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.req(Method::GET, path).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json body"))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .req(Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json body"))
    }

    /// POST /executions and return the created execution (asserting 201).
    pub async fn run(&self, action: &str, parameters: Value) -> Value {
        let (status, body) = self
            .post_json(
                "/api/v1/executions",
                json!({"action": action, "parameters": parameters}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Open an SSE stream with the API key.
    pub async fn sse(&self, path_and_query: &str) -> Sse {
        let resp = self
            .req(Method::GET, path_and_query)
            .send()
            .await
            .expect("stream request");
        assert_eq!(resp.status(), 200);
        Sse::new(resp)
    }

    /// Wait until the execution reaches a status in `wanted`, driven by stream events.
    pub async fn wait_status(&self, id: &str, wanted: &[&str]) -> Value {
        let mut sse = self
            .sse(&format!(
                "/stream/v1/stream?events=st2.execution__update&execution_ids={id}"
            ))
            .await;
        let (_, current) = self.get_json(&format!("/api/v1/executions/{id}")).await;
        if wanted.contains(&current["status"].as_str().unwrap_or_default()) {
            return current;
        }
        loop {
            let frame = sse
                .next_event()
                .await
                .expect("stream stays open until the status arrives");
            let body: Value = serde_json::from_str(&frame.data).expect("json data");
            if wanted.contains(&body["status"].as_str().unwrap_or_default()) {
                return body;
            }
        }
    }
}

/// One SSE frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub data: String,
}

/// Reads an SSE body chunk by chunk; keeps the raw bytes for framing checks.
pub struct Sse {
    pub headers: reqwest::header::HeaderMap,
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    pub raw: String,
    pos: usize,
}

impl Sse {
    pub fn new(resp: Response) -> Sse {
        Sse {
            headers: resp.headers().clone(),
            stream: resp.bytes_stream().boxed(),
            raw: String::new(),
            pos: 0,
        }
    }

    /// Read more bytes; Ok(false) at a clean end, Err on an aborted body.
    pub async fn pull(&mut self) -> Result<bool, reqwest::Error> {
        match tokio::time::timeout(WAIT, self.stream.next())
            .await
            .expect("stream produced nothing within the wait bound")
        {
            Some(Ok(b)) => {
                self.raw.push_str(std::str::from_utf8(&b).expect("utf-8"));
                Ok(true)
            }
            Some(Err(e)) => Err(e),
            None => Ok(false),
        }
    }

    /// The next complete `event:`/`data:` frame (heartbeats skipped); None when the stream ended.
    pub async fn next_event(&mut self) -> Option<Frame> {
        loop {
            while let Some(end) = self.raw[self.pos..].find("\n\n") {
                let block = self.raw[self.pos..self.pos + end]
                    .trim_start_matches('\n')
                    .to_string();
                self.pos += end + 2;
                if let Some(frame) = parse_frame(&block) {
                    return Some(frame);
                }
            }
            match self.pull().await {
                Ok(true) => {}
                _ => return None,
            }
        }
    }

    /// Read until the stream ends (cleanly or not); returns whether it ended cleanly.
    pub async fn read_to_end(&mut self) -> bool {
        loop {
            match self.pull().await {
                Ok(true) => {}
                Ok(false) => return true,
                Err(_) => return false,
            }
        }
    }
}

fn parse_frame(block: &str) -> Option<Frame> {
    let mut event = None;
    let mut data = None;
    for line in block.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = Some(e.to_string());
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = Some(d.to_string());
        }
    }
    Some(Frame {
        event: event?,
        data: data?,
    })
}

/// The statuses recorded in an execution's `log`.
pub fn log_statuses(e: &Value) -> Vec<String> {
    e["log"]
        .as_array()
        .expect("log array")
        .iter()
        .map(|l| l["status"].as_str().expect("status").to_string())
        .collect()
}

/// Asserts an st2 error answer: the status and st2's exact `faultstring`.
pub async fn assert_fault(r: reqwest::Response, status: u16, faultstring: &str) {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.expect("an st2 error body is JSON");
    assert_eq!(body["faultstring"], faultstring, "{body}");
}
