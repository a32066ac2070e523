//! `/api/v1/executions`: run actions and follow, list, cancel, pause, resume and re-run them.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Request, Service, St2Client};
use super::error::St2Error;
use super::models::{Execution, ExecutionStatus, Fault, JsonObject, OutputType};

/// A page of a list call, with st2's pagination headers.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// `X-Total-Count`: how many match the filters in all.
    pub total_count: Option<u64>,
    /// `X-Limit`: the page size st2 applied.
    pub limit: Option<u64>,
}

/// What `DELETE /executions/{id}` did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The execution is now `canceling` or `canceled`.
    Canceled(Box<Execution>),
    /// It had already completed; st2 answers 200 with a faultstring in that case.
    AlreadyCompleted {
        /// st2's message, e.g. `Action cannot be canceled. State = succeeded.`
        faultstring: String,
    },
}

/// A request to run an action (`POST /executions`).
#[derive(Debug, Clone, Default)]
pub struct ExecutionRequest {
    /// Action ref, `pack.name`.
    pub action: String,
    /// Action parameters.
    pub parameters: JsonObject,
    /// Extra execution context; st2 overwrites `user` and `pack`.
    pub context: JsonObject,
    /// Trace tag, stored as `context.trace_context.trace_tag` (what `st2 run --trace-tag` does).
    pub trace_tag: Option<String>,
    /// Hold the execution `delayed` this many milliseconds first.
    pub delay_ms: Option<u64>,
}

impl ExecutionRequest {
    /// A request for `action` with no parameters.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            ..Self::default()
        }
    }

    fn body(&self) -> Value {
        let mut context = self.context.clone();
        if let Some(tag) = &self.trace_tag {
            context.insert("trace_context".into(), json!({ "trace_tag": tag }));
        }
        let mut body = json!({ "action": self.action, "parameters": self.parameters });
        if !context.is_empty() {
            body["context"] = Value::Object(context);
        }
        if let Some(delay) = self.delay_ms {
            body["delay"] = json!(delay);
        }
        body
    }
}

/// A re-run request (`POST /executions/{id}/re_run`).
#[derive(Debug, Clone, Default)]
pub struct RerunRequest {
    /// Parameters merged over the original ones.
    pub parameters: JsonObject,
    /// Orquesta only: tasks to re-run.
    pub tasks: Vec<String>,
    /// Orquesta only: tasks (a subset of `tasks`) whose state is reset.
    pub reset: Vec<String>,
    /// Delay in milliseconds.
    pub delay_ms: Option<u64>,
}

/// The executions API area; get it from [`St2Client::executions`].
pub struct Executions<'a> {
    client: &'a St2Client,
}

impl St2Client {
    /// Executions: create, get, list, cancel, pause, resume, re-run, output, children.
    pub fn executions(&self) -> Executions<'_> {
        Executions { client: self }
    }
}

impl<'a> Executions<'a> {
    /// Runs an action; st2 answers with the new execution in `requested`. Never retried
    /// automatically: a retry could start a second execution.
    pub async fn create(&self, request: &ExecutionRequest) -> Result<Execution, St2Error> {
        let mut req = Request::new(Service::Api, Method::POST, "/executions");
        req.json = Some(request.body());
        self.client.send(req).await?.json()
    }

    /// Starts a `GET /executions/{id}`; `id` may be `last`.
    pub fn get(&self, id: &str) -> GetExecution<'a> {
        GetExecution {
            client: self.client,
            id: id.to_string(),
            include: Vec::new(),
            exclude: Vec::new(),
            max_result_size: None,
        }
    }

    /// Starts a `GET /executions` list.
    pub fn list(&self) -> ListExecutions<'a> {
        ListExecutions {
            client: self.client,
            query: Vec::new(),
        }
    }

    /// Cancels an execution (`DELETE /executions/{id}`).
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, St2Error> {
        let req = Request::new(
            Service::Api,
            Method::DELETE,
            format!("/executions/{}", seg(id)),
        );
        let answer = self.client.send(req).await?;
        if let Ok(fault) = serde_json::from_slice::<Fault>(&answer.body) {
            return Ok(CancelOutcome::AlreadyCompleted {
                faultstring: fault.faultstring,
            });
        }
        Ok(CancelOutcome::Canceled(Box::new(answer.json()?)))
    }

    /// Pauses a workflow (orquesta, action-chain); st2 refuses other runners with 400.
    pub async fn pause(&self, id: &str) -> Result<Execution, St2Error> {
        self.put_status(id, ExecutionStatus::Pausing).await
    }

    /// Resumes a paused workflow.
    pub async fn resume(&self, id: &str) -> Result<Execution, St2Error> {
        self.put_status(id, ExecutionStatus::Resuming).await
    }

    async fn put_status(&self, id: &str, status: ExecutionStatus) -> Result<Execution, St2Error> {
        let mut req = Request::new(
            Service::Api,
            Method::PUT,
            format!("/executions/{}", seg(id)),
        );
        req.json = Some(json!({ "status": status }));
        self.client.send(req).await?.json()
    }

    /// Runs an execution again as a new execution; never retried automatically.
    pub async fn rerun(&self, id: &str, request: &RerunRequest) -> Result<Execution, St2Error> {
        let mut body = json!({ "parameters": request.parameters });
        if !request.tasks.is_empty() {
            body["tasks"] = json!(request.tasks);
        }
        if !request.reset.is_empty() {
            body["reset"] = json!(request.reset);
        }
        if let Some(delay) = request.delay_ms {
            body["delay"] = json!(delay);
        }
        let mut req = Request::new(
            Service::Api,
            Method::POST,
            format!("/executions/{}/re_run", seg(id)),
        );
        req.json = Some(body);
        self.client.send(req).await?.json()
    }

    /// The output recorded so far, as text.
    pub async fn output(&self, id: &str, output_type: OutputType) -> Result<String, St2Error> {
        let mut req = Request::new(
            Service::Api,
            Method::GET,
            format!("/executions/{}/output", seg(id)),
        );
        req.query = vec![("output_type".into(), output_type.as_str().into())];
        let answer = self.client.send(req).await?;
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    /// Descendants of a workflow execution; `depth` -1 means all levels.
    pub async fn children(&self, id: &str, depth: i32) -> Result<Vec<Execution>, St2Error> {
        let mut req = Request::new(
            Service::Api,
            Method::GET,
            format!("/executions/{}/children", seg(id)),
        );
        req.query = vec![("depth".into(), depth.to_string())];
        self.client.send(req).await?.json()
    }
}

/// Builder for `GET /executions/{id}`.
pub struct GetExecution<'a> {
    client: &'a St2Client,
    id: String,
    include: Vec<String>,
    exclude: Vec<String>,
    max_result_size: Option<u64>,
}

impl GetExecution<'_> {
    /// Return only these attributes (st2 always adds a few it needs for masking).
    pub fn include(mut self, attributes: &[&str]) -> Self {
        self.include = attributes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Leave these out; st2 accepts only `result`, `trigger_instance` and `status`.
    pub fn exclude(mut self, attributes: &[&str]) -> Self {
        self.exclude = attributes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Leave `result` out when it is larger than `bytes`.
    pub fn max_result_size(mut self, bytes: u64) -> Self {
        self.max_result_size = Some(bytes);
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<Execution, St2Error> {
        let mut req = Request::new(
            Service::Api,
            Method::GET,
            format!("/executions/{}", seg(&self.id)),
        );
        push_list(&mut req.query, "include_attributes", &self.include);
        push_list(&mut req.query, "exclude_attributes", &self.exclude);
        if let Some(max) = self.max_result_size {
            req.query.push(("max_result_size".into(), max.to_string()));
        }
        self.client.send(req).await?.json()
    }
}

/// Builder for `GET /executions`.
pub struct ListExecutions<'a> {
    client: &'a St2Client,
    query: Vec<(String, String)>,
}

impl ListExecutions<'_> {
    fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.retain(|(k, _)| k != key);
        self.query.push((key.to_string(), value.into()));
        self
    }

    /// Only executions of this action ref.
    pub fn action(self, action_ref: &str) -> Self {
        self.set("action", action_ref)
    }

    /// Only executions in this status.
    pub fn status(self, status: &ExecutionStatus) -> Self {
        self.set("status", status.as_str())
    }

    /// Only children of this execution.
    pub fn parent(self, id: &str) -> Self {
        self.set("parent", id)
    }

    /// Only executions run by this user.
    pub fn user(self, user: &str) -> Self {
        self.set("user", user)
    }

    /// Only executions started after this time (switches st2 to ascending order).
    pub fn started_after(self, t: time::OffsetDateTime) -> Self {
        self.set("timestamp_gt", rfc3339(t))
    }

    /// Only executions started before this time.
    pub fn started_before(self, t: time::OffsetDateTime) -> Self {
        self.set("timestamp_lt", rfc3339(t))
    }

    /// st2's advanced filter `path:value` (e.g. `context.portarium.key`); the value is
    /// compared as a string and must not contain spaces.
    pub fn filter(self, path: &str, value: &str) -> Self {
        self.set("filter", format!("{path}:{value}"))
    }

    /// Return only these attributes.
    pub fn include(self, attributes: &[&str]) -> Self {
        self.set("include_attributes", attributes.join(","))
    }

    /// Leave these attributes out (`result`, `trigger_instance`, `status`).
    pub fn exclude(self, attributes: &[&str]) -> Self {
        self.set("exclude_attributes", attributes.join(","))
    }

    /// Page size (st2's default and non-admin maximum is 100).
    pub fn limit(self, limit: u32) -> Self {
        self.set("limit", limit.to_string())
    }

    /// Skip this many matches.
    pub fn offset(self, offset: u64) -> Self {
        self.set("offset", offset.to_string())
    }

    /// Fetches one page.
    pub async fn send(&self) -> Result<Page<Execution>, St2Error> {
        let mut req = Request::new(Service::Api, Method::GET, "/executions");
        req.query = self.query.clone();
        let answer = self.client.send(req).await?;
        Ok(Page {
            items: answer.json()?,
            total_count: answer.header_u64("x-total-count"),
            limit: answer.header_u64("x-limit"),
        })
    }

    /// Walks pages by offset until `X-Total-Count` is reached, a page is short, or
    /// `max_pages` pages were read (the bound keeps a huge history from running away).
    pub async fn all(self, max_pages: usize) -> Result<Vec<Execution>, St2Error> {
        let start: u64 = self
            .query
            .iter()
            .find(|(k, _)| k == "offset")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut items = Vec::new();
        let mut this = self;
        for _ in 0..max_pages {
            let page = this.send().await?;
            let got = page.items.len() as u64;
            items.extend(page.items);
            let done = got == 0
                || page.limit.is_some_and(|l| got < l)
                || page
                    .total_count
                    .is_some_and(|t| start + items.len() as u64 >= t);
            if done {
                break;
            }
            this = this.offset(start + items.len() as u64);
        }
        Ok(items)
    }
}

/// Percent-encodes a path segment so an id can never change the path.
pub(crate) fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn push_list(query: &mut Vec<(String, String)>, key: &str, values: &[String]) {
    if !values.is_empty() {
        query.push((key.to_string(), values.join(",")));
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("an OffsetDateTime always formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_puts_trace_tag_in_trace_context_and_keeps_context() {
        let mut r = ExecutionRequest::new("core.local");
        r.parameters.insert("cmd".into(), json!("echo hi"));
        r.context
            .insert("portarium".into(), json!({"run_id": "r1"}));
        r.trace_tag = Some("idem-1".into());
        r.delay_ms = Some(500);
        let body = r.body();
        assert_eq!(body["action"], "core.local");
        assert_eq!(body["parameters"]["cmd"], "echo hi");
        assert_eq!(body["context"]["trace_context"]["trace_tag"], "idem-1");
        assert_eq!(body["context"]["portarium"]["run_id"], "r1");
        assert_eq!(body["delay"], 500);
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(seg("../actions"), "..%2Factions");
        assert_eq!(seg("a b?c"), "a%20b%3Fc");
    }
}
