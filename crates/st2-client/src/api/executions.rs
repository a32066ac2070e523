//! `/api/v1/executions`: run actions and follow, list, cancel, pause, resume and re-run them.

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::List;
use crate::client::{ApiRequest, St2Client};
use crate::error::St2Error;
use crate::models::{
    CreatedExecution, Execution, ExecutionStatus, Fault, JsonObject, Notify, OutputType, st2_time,
};

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
    /// Notifications st2 sends when it ends.
    pub notify: Option<Notify>,
}

impl ExecutionRequest {
    /// A request for `action` with no parameters.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            ..Self::default()
        }
    }

    /// The JSON body st2 expects.
    fn body(&self) -> Value {
        let mut context = self.context.clone();
        if let Some(tag) = &self.trace_tag {
            // Kept beside a trace id the caller may have put there (joining that trace).
            let trace = context.entry("trace_context").or_insert_with(|| json!({}));
            match trace.as_object_mut() {
                Some(t) => {
                    t.insert("trace_tag".into(), json!(tag));
                }
                None => *trace = json!({ "trace_tag": tag }),
            }
        }
        let mut body = json!({ "action": self.action, "parameters": self.parameters });
        if !context.is_empty() {
            body["context"] = Value::Object(context);
        }
        if let Some(delay) = self.delay_ms {
            body["delay"] = json!(delay);
        }
        if let Some(notify) = &self.notify {
            body["notify"] = json!(notify);
        }
        body
    }
}

/// A re-run request (`POST /executions/{id}/re_run`).
#[derive(Debug, Clone, Default)]
pub struct RerunRequest {
    /// Parameters merged over the original ones (or used alone with `no_merge`).
    pub parameters: JsonObject,
    /// Orquesta only: tasks to re-run.
    pub tasks: Vec<String>,
    /// Orquesta only: tasks (a subset of `tasks`) whose state is reset.
    pub reset: Vec<String>,
    /// Delay in milliseconds.
    pub delay_ms: Option<u64>,
    /// Do not merge the original parameters in.
    pub no_merge: bool,
}

impl RerunRequest {
    fn body(&self) -> Value {
        let mut body = json!({ "parameters": self.parameters });
        if !self.tasks.is_empty() {
            body["tasks"] = json!(self.tasks);
        }
        if !self.reset.is_empty() {
            body["reset"] = json!(self.reset);
        }
        if let Some(delay) = self.delay_ms {
            body["delay"] = json!(delay);
        }
        body
    }
}

/// Order of an executions list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// By start time, newest first (st2's default).
    NewestFirst,
    /// By start time, oldest first.
    OldestFirst,
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
    /// Runs an action; st2 answers 201 with the new execution in `requested`. Never retried
    /// automatically: a retry could start a second execution.
    pub async fn create(&self, request: &ExecutionRequest) -> Result<Execution, St2Error> {
        self.post(request).await
    }

    /// [`Executions::create`], with the answer read without the `action` and `runner`
    /// documents st2 embeds in it (see [`CreatedExecution`]), for callers that need neither.
    pub async fn create_brief(&self, request: &ExecutionRequest) -> Result<Execution, St2Error> {
        self.post(request)
            .await
            .map(|CreatedExecution(created)| created)
    }

    /// The one `POST /executions`, its answer read as `T`.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        request: &ExecutionRequest,
    ) -> Result<T, St2Error> {
        let req = ApiRequest::new(Method::POST, ["executions"]).json(request.body());
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
            show_secrets: false,
        }
    }

    /// Starts a `GET /executions` list (newest first unless sorted otherwise).
    pub fn list(&self) -> ListExecutions<'a> {
        List::new(self.client, &["executions"])
    }

    /// Cancels an execution (`DELETE /executions/{id}`). Cancelling one that already
    /// completed is not an error: st2 says so with a 200, returned as
    /// [`CancelOutcome::AlreadyCompleted`].
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, St2Error> {
        let answer = self
            .client
            .send(ApiRequest::new(Method::DELETE, ["executions", id]))
            .await?;
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
        let req =
            ApiRequest::new(Method::PUT, ["executions", id]).json(json!({ "status": status }));
        self.client.send(req).await?.json()
    }

    /// Runs an execution again as a new one (201); `context.re-run.ref` names the original.
    /// Never retried automatically.
    pub async fn rerun(&self, id: &str, request: &RerunRequest) -> Result<Execution, St2Error> {
        let mut req =
            ApiRequest::new(Method::POST, ["executions", id, "re_run"]).json(request.body());
        if request.no_merge {
            req = req.query("no_merge", "true");
        }
        self.client.send(req).await?.json()
    }

    /// The output recorded so far, as text; st2 never blocks on this call.
    pub async fn output(&self, id: &str, output_type: OutputType) -> Result<String, St2Error> {
        let req = ApiRequest::get(["executions", id, "output"])
            .query("output_type", output_type.as_str());
        Ok(self.client.send(req).await?.text())
    }

    /// Descendants of a workflow execution; `depth` -1 means all levels.
    pub async fn children(&self, id: &str, depth: i32) -> Result<Vec<Execution>, St2Error> {
        let req = ApiRequest::get(["executions", id, "children"]).query("depth", depth.to_string());
        self.client.send(req).await?.json()
    }
}

/// Builder for `GET /executions/{id}`.
#[must_use = "nothing is fetched until `send` is awaited"]
pub struct GetExecution<'a> {
    client: &'a St2Client,
    id: String,
    include: Vec<String>,
    exclude: Vec<String>,
    max_result_size: Option<u64>,
    show_secrets: bool,
}

impl GetExecution<'_> {
    /// Ask for secret parameters unmasked (`show_secrets`): st2 honours it for admins only,
    /// and answers everyone else with the masks as usual.
    pub fn show_secrets(mut self) -> Self {
        self.show_secrets = true;
        self
    }

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

    /// Leave `result` out when it is larger than `bytes` (st2 allows up to 14 MiB).
    pub fn max_result_size(mut self, bytes: u64) -> Self {
        self.max_result_size = Some(bytes);
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<Execution, St2Error> {
        let mut req = ApiRequest::get(["executions", self.id.as_str()]);
        if !self.include.is_empty() {
            req = req.query("include_attributes", self.include.join(","));
        }
        if !self.exclude.is_empty() {
            req = req.query("exclude_attributes", self.exclude.join(","));
        }
        if let Some(max) = self.max_result_size {
            req = req.query("max_result_size", max.to_string());
        }
        if self.show_secrets {
            req = req.query("show_secrets", "true");
        }
        self.client.send(req).await?.json()
    }
}

/// Builder for `GET /executions`.
pub type ListExecutions<'a> = List<'a, Execution>;

impl List<'_, Execution> {
    /// Only executions of this action ref.
    pub fn action(self, action_ref: &str) -> Self {
        self.set("action", action_ref)
    }

    /// Only executions in this status.
    pub fn status(self, status: &ExecutionStatus) -> Self {
        self.set("status", status.as_str())
    }

    /// Only these executions (`id=a,b`; st2 takes at most 100).
    pub fn ids(self, ids: &[&str]) -> Self {
        self.set("id", ids.join(","))
    }

    /// Only children of this execution.
    pub fn parent(self, id: &str) -> Self {
        self.set("parent", id)
    }

    /// Only executions run by this user (`context.user`).
    pub fn user(self, user: &str) -> Self {
        self.set("user", user)
    }

    /// Only executions started after this time (`timestamp_gt`; st2 then lists oldest first).
    pub fn started_after(self, t: OffsetDateTime) -> Self {
        self.set("timestamp_gt", st2_time(t))
    }

    /// Only executions started before this time (`timestamp_lt`; newest first).
    pub fn started_before(self, t: OffsetDateTime) -> Self {
        self.set("timestamp_lt", st2_time(t))
    }

    /// Adds a term to st2's advanced filter (`filter=path:value`, terms joined by spaces),
    /// e.g. `context.portarium.key`. st2 compares the value as a string and splits terms on
    /// spaces, so a value with whitespace is refused rather than silently mismatched. The
    /// advanced filter overrides st2's other filters.
    pub fn filter(self, path: &str, value: &str) -> Self {
        let term = format!("{path}:{value}");
        if term.chars().any(char::is_whitespace) {
            return self.refuse(format!(
                "filter term {term:?} contains whitespace, which st2 treats as a separator"
            ));
        }
        let joined = match self.query.iter().find(|(k, _)| *k == "filter") {
            Some((_, earlier)) => format!("{earlier} {term}"),
            None => term,
        };
        self.set("filter", joined)
    }

    /// Return only these attributes.
    pub fn include(self, attributes: &[&str]) -> Self {
        self.set("include_attributes", attributes.join(","))
    }

    /// Leave these attributes out (st2 accepts `result`, `trigger_instance`, `status`).
    pub fn exclude(self, attributes: &[&str]) -> Self {
        self.set("exclude_attributes", attributes.join(","))
    }

    /// Orders by start time. A `timestamp_lt`/`timestamp_gt` filter takes precedence in st2.
    pub fn sort(self, order: SortOrder) -> Self {
        let (key, other) = match order {
            SortOrder::NewestFirst => ("sort_desc", "sort_asc"),
            SortOrder::OldestFirst => ("sort_asc", "sort_desc"),
        };
        let mut list = self.set(key, "True");
        list.query.retain(|(k, _)| *k != other);
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::NotifyTarget;

    #[test]
    fn create_body_puts_trace_tag_in_trace_context_and_keeps_context() {
        let mut r = ExecutionRequest::new("core.local");
        r.parameters.insert("cmd".into(), json!("echo hi"));
        r.context
            .insert("portarium".into(), json!({"run_id": "r1"}));
        r.context
            .insert("trace_context".into(), json!({"id_": "t-1"}));
        r.trace_tag = Some("idem-1".into());
        r.delay_ms = Some(500);
        r.notify = Some(Notify {
            on_failure: Some(NotifyTarget {
                message: Some("failed".into()),
                routes: vec!["ops".into()],
                ..NotifyTarget::default()
            }),
            ..Notify::default()
        });
        let body = r.body();
        assert_eq!(body["action"], "core.local");
        assert_eq!(body["parameters"]["cmd"], "echo hi");
        assert_eq!(
            body["context"]["trace_context"],
            json!({"id_": "t-1", "trace_tag": "idem-1"})
        );
        assert_eq!(body["context"]["portarium"]["run_id"], "r1");
        assert_eq!(body["delay"], 500);
        assert_eq!(
            body["notify"],
            json!({"on-failure": {"message": "failed", "routes": ["ops"]}})
        );
        let bare = ExecutionRequest::new("core.noop").body();
        assert_eq!(bare, json!({"action": "core.noop", "parameters": {}}));
    }

    #[test]
    fn rerun_body_sends_only_what_is_set() {
        assert_eq!(RerunRequest::default().body(), json!({"parameters": {}}));
        let r = RerunRequest {
            tasks: vec!["t1".into()],
            reset: vec!["t1".into()],
            delay_ms: Some(10),
            ..RerunRequest::default()
        };
        assert_eq!(
            r.body(),
            json!({"parameters": {}, "tasks": ["t1"], "reset": ["t1"], "delay": 10})
        );
    }
}
