//! The emulated scheduler, action runner and workflow engine: each execution gets one task that
//! moves it requested → (delayed →) scheduled → running → terminal, one `step` apart, and reacts to
//! cancel / pause / resume requests the API records.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::catalogue::{Behaviour, WorkflowTask};
use crate::model::Status;
use crate::params;
use crate::shell::Effect;
use crate::state::{NewExecution, Shared};
use crate::util::{lookup_path, object_id, py_str};

/// Start the task that runs an execution.
pub(crate) fn start(shared: &Arc<Shared>, id: String) {
    let sh = shared.clone();
    shared.spawn(async move {
        if let Some(rx) = sh.status_rx(&id) {
            Runner { sh, id, rx }.run().await;
        }
    });
}

/// Why the normal flow stopped.
enum Stop {
    /// The execution is finished (or was finished by someone else).
    Done,
}

type Flow<T = ()> = Result<T, Stop>;

struct Runner {
    sh: Arc<Shared>,
    id: String,
    rx: watch::Receiver<Status>,
}

/// What a non-workflow action's run amounts to.
struct Plan {
    effects: Vec<Effect>,
    finish: Finish,
    timeout: Option<Duration>,
}

enum Finish {
    Fixed(Status, Value),
    Shell(i64),
}

impl Runner {
    fn step(&self) -> Duration {
        self.sh.config.step
    }

    fn status(&self) -> Status {
        *self.rx.borrow()
    }

    /// Wait `d`, reacting to outside status changes: a cancel request is carried out, a
    /// completion by someone else stops the flow. Other changes (pause/resume) end the wait early
    /// when `wake_on_change` is set.
    async fn wait(&mut self, d: Duration, wake_on_change: bool) -> Flow<bool> {
        let deadline = Instant::now() + d;
        loop {
            match self.status() {
                Status::Canceling => {
                    self.finish_cancel().await;
                    return Err(Stop::Done);
                }
                s if s.is_completed() => return Err(Stop::Done),
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(true),
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return Err(Stop::Done);
                    }
                    if wake_on_change && !matches!(self.status(), Status::Canceling) && !self.status().is_completed() {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// The runner side of a cancel: stop children, wait a step, then `canceled`.
    async fn finish_cancel(&mut self) {
        let children: Vec<String> = self
            .sh
            .store()
            .execution(&self.id)
            .map(|e| e.children.clone())
            .unwrap_or_default();
        for child in children {
            if self.sh.status(&child).is_some_and(Status::is_cancelable) {
                let user = self
                    .sh
                    .store()
                    .execution(&self.id)
                    .map(|e| e.user())
                    .unwrap_or_default();
                let _ = self.sh.request_cancel(&child, &user);
            }
            if let Some(mut crx) = self.sh.status_rx(&child) {
                let _ = crx.wait_for(|s| s.is_completed()).await;
            }
        }
        tokio::time::sleep(self.step()).await;
        self.sh
            .transition(&self.id, &[Status::Canceling], Status::Canceled, None);
    }

    /// Wait a step, then move `from` → `to`.
    async fn advance(&mut self, from: Status, to: Status) -> Flow {
        self.wait(self.step(), false).await?;
        if self.sh.transition(&self.id, &[from], to, None) {
            Ok(())
        } else {
            Err(Stop::Done)
        }
    }

    async fn run(mut self) {
        let _ = self.lifecycle().await;
        // A cancel request that raced with the final transition still gets carried out.
        if self.status() == Status::Canceling {
            self.finish_cancel().await;
        }
    }

    async fn lifecycle(&mut self) -> Flow {
        let Some(e) = self.sh.store().execution(&self.id).cloned() else {
            return Err(Stop::Done);
        };
        let mut from = Status::Requested;
        if let Some(delay) = e.delay {
            if !self
                .sh
                .transition(&self.id, &[Status::Requested], Status::Delayed, None)
            {
                return self.wait(Duration::ZERO, false).await.map(drop);
            }
            self.wait(Duration::from_millis(delay), false).await?;
            from = Status::Delayed;
        }
        self.advance(from, Status::Scheduled).await?;
        self.advance(Status::Scheduled, Status::Running).await?;
        let action = self
            .sh
            .catalogue
            .action(&e.action_ref)
            .expect("executions only exist for catalogue actions");
        let merged = self.sh.catalogue.merged_parameters(action);
        let params = params::effective(&e.parameters, &merged);
        let ctx = Value::Object(params.clone());
        match action.behaviour() {
            Behaviour::Workflow { tasks, output } => {
                self.run_workflow(&tasks, &output, params).await
            }
            other => {
                let plan = plan(&other, &ctx, &e.runner_name, &params);
                self.run_plan(plan).await
            }
        }
    }

    async fn run_plan(&mut self, plan: Plan) -> Flow {
        let started = Instant::now();
        let (mut stdout, mut stderr) = (String::new(), String::new());
        let mut timed_out = None;
        for effect in plan.effects {
            match effect {
                Effect::Out(stream, text) => {
                    if stream == "stderr" {
                        stderr.push_str(&text);
                    } else {
                        stdout.push_str(&text);
                    }
                    self.sh.add_output(&self.id, stream, text);
                }
                Effect::Sleep(d) => {
                    let left = plan.timeout.map(|t| t.saturating_sub(started.elapsed()));
                    if let Some(left) = left.filter(|l| *l < d) {
                        self.wait(left, false).await?;
                        timed_out = plan.timeout;
                        break;
                    }
                    self.wait(d, false).await?;
                }
            }
        }
        // The running phase lasts at least one step, like every other phase.
        let rest = self.step().saturating_sub(started.elapsed());
        self.wait(rest, false).await?;
        let trim = |s: &str| s.trim_end_matches('\n').to_string();
        let (status, result) = match (timed_out, plan.finish) {
            (Some(t), _) => (
                Status::Timeout,
                json!({
                    "failed": true, "succeeded": false, "return_code": -9,
                    "stdout": trim(&stdout), "stderr": trim(&stderr),
                    "error": format!("Action failed to complete in {} seconds", t.as_secs()),
                }),
            ),
            (None, Finish::Fixed(s, r)) => (s, r),
            (None, Finish::Shell(rc)) => (
                if rc == 0 {
                    Status::Succeeded
                } else {
                    Status::Failed
                },
                json!({
                    "failed": rc != 0, "succeeded": rc == 0, "return_code": rc,
                    "stdout": trim(&stdout), "stderr": trim(&stderr),
                }),
            ),
        };
        self.sh
            .transition(&self.id, &[Status::Running], status, Some(result));
        Ok(())
    }

    /// Hold while paused: `pausing` → `paused`, then wait for `resuming` → `running`.
    async fn hold_if_pausing(&mut self) -> Flow<bool> {
        if self.status() != Status::Pausing {
            return Ok(false);
        }
        self.wait(self.step(), false).await?;
        if !self
            .sh
            .transition(&self.id, &[Status::Pausing], Status::Paused, None)
        {
            return Err(Stop::Done);
        }
        while self.status() != Status::Resuming {
            self.wait(Duration::from_secs(3600), true).await?;
        }
        self.advance(Status::Resuming, Status::Running).await?;
        Ok(true)
    }

    async fn run_workflow(
        &mut self,
        tasks: &[WorkflowTask],
        output: &Value,
        params: Map<String, Value>,
    ) -> Flow {
        let workflow_execution = object_id();
        let (user, pack) = {
            let e = self.sh.update(&self.id, true, |e| {
                e.context
                    .insert("workflow_execution".into(), json!(workflow_execution));
                e.set_result(json!({"output": null}));
            });
            let e = e.ok_or(Stop::Done)?;
            (e.user(), json!(e.context.get("pack")))
        };
        let mut ctx = params;
        let mut paused_after_last = false;
        for task in tasks {
            self.hold_if_pausing().await?;
            self.wait(Duration::ZERO, false).await?;
            let action = self
                .sh
                .catalogue
                .action(&task.action)
                .expect("workflow tasks checked at catalogue load");
            let rendered = match render(
                &Value::Object(task.parameters.clone()),
                &Value::Object(ctx.clone()),
            ) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            let task_execution = object_id();
            let mut context = Map::new();
            context.insert("pack".into(), json!(action.pack));
            context.insert("user".into(), json!(user));
            context.insert(
                "parent".into(),
                json!({"execution_id": self.id, "user": user, "pack": pack}),
            );
            context.insert(
                "orquesta".into(),
                json!({
                    "workflow_execution_id": workflow_execution,
                    "task_execution_id": task_execution,
                    "task_name": task.name,
                    "task_id": task.name,
                    "task_route": 0,
                }),
            );
            let child = self
                .sh
                .create_execution(NewExecution {
                    action,
                    parameters: rendered,
                    context,
                    delay: None,
                    notify: None,
                    parent: Some(self.id.clone()),
                    workflow_execution: Some(workflow_execution.clone()),
                    task_execution: Some(task_execution),
                    origin: Map::new(),
                })
                .map_err(|_| Stop::Done)?;
            let mut crx = self.sh.status_rx(&child.id).ok_or(Stop::Done)?;
            loop {
                tokio::select! {
                    done = async { crx.wait_for(|s| s.is_completed()).await.map(drop) } => { done.map_err(|_| Stop::Done)?; break; }
                    changed = self.rx.changed() => {
                        changed.map_err(|_| Stop::Done)?;
                        match self.status() {
                            Status::Canceling => { self.finish_cancel().await; return Err(Stop::Done); }
                            s if s.is_completed() => return Err(Stop::Done),
                            _ => {}
                        }
                    }
                }
            }
            let child = self
                .sh
                .store()
                .execution(&child.id)
                .cloned()
                .ok_or(Stop::Done)?;
            self.sh.update(&self.id, true, |_| {});
            if child.status != Status::Succeeded {
                let errors = json!([{
                    "type": "error",
                    "message": format!("Execution failed. See result for details."),
                    "task_id": task.name,
                    "result": child.result,
                }]);
                self.sh.transition(
                    &self.id,
                    &[Status::Running, Status::Pausing],
                    Status::Failed,
                    Some(json!({"errors": errors, "output": null})),
                );
                return Ok(());
            }
            ctx.insert(task.name.clone(), child.result.clone());
        }
        loop {
            if self.hold_if_pausing().await? {
                // st2 loses the output of a workflow paused after its last task.
                paused_after_last = true;
            }
            self.wait(self.step(), false).await?;
            let out = if paused_after_last {
                Value::Null
            } else {
                render(output, &Value::Object(ctx.clone()))
            };
            let result = Some(json!({ "output": out }));
            if self
                .sh
                .transition(&self.id, &[Status::Running], Status::Succeeded, result)
            {
                return Ok(());
            }
            // A pause or cancel request came in just before completion: handle it and retry.
        }
    }
}

/// Render `{{ path }}` placeholders in strings (recursively through objects and arrays). A string
/// that is a single placeholder keeps the referenced value's JSON type.
pub(crate) fn render(template: &Value, ctx: &Value) -> Value {
    match template {
        Value::String(s) => render_str(s, ctx),
        Value::Array(a) => Value::Array(a.iter().map(|v| render(v, ctx)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), render(v, ctx))).collect())
        }
        other => other.clone(),
    }
}

fn render_str(s: &str, ctx: &Value) -> Value {
    let trimmed = s.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|r| r.strip_suffix("}}"))
        && !inner.contains("{{")
    {
        return lookup_path(ctx, inner.trim())
            .cloned()
            .unwrap_or(Value::Null);
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return Value::String(out);
        };
        let path = rest[start + 2..start + end].trim();
        if let Some(v) = lookup_path(ctx, path).filter(|v| !v.is_null()) {
            out.push_str(&py_str(v));
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Value::String(out)
}

fn as_u64(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Turn a behaviour into effects and an outcome.
fn plan(b: &Behaviour, ctx: &Value, runner: &str, params: &Map<String, Value>) -> Plan {
    let timeout = (runner == "local-shell-cmd")
        .then(|| params.get("timeout").map(as_u64).unwrap_or(60))
        .map(Duration::from_secs);
    let line = |text: &str| format!("{text}\n");
    match b {
        Behaviour::Result {
            status,
            result,
            duration_ms,
        } => Plan {
            effects: vec![Effect::Sleep(Duration::from_millis(*duration_ms))],
            finish: Finish::Fixed(
                Status::parse(status).unwrap_or(Status::Succeeded),
                render(result, ctx),
            ),
            timeout: None,
        },
        Behaviour::Shell {
            command,
            stdout,
            stderr,
            return_code,
            duration_ms,
        } => {
            if command.is_none() && (stdout.is_some() || stderr.is_some() || return_code.is_some())
            {
                let mut effects = Vec::new();
                for (stream, t) in [("stdout", stdout), ("stderr", stderr)] {
                    if let Some(t) = t {
                        let text = py_str(&render_str(t, ctx));
                        if !text.is_empty() {
                            effects.push(Effect::Out(stream, line(&text)));
                        }
                    }
                }
                effects.push(Effect::Sleep(Duration::from_millis(*duration_ms)));
                return Plan {
                    effects,
                    finish: Finish::Shell(return_code.unwrap_or(0)),
                    timeout,
                };
            }
            let cmd = match command {
                Some(c) => py_str(&render_str(c, ctx)),
                None => params.get("cmd").map(py_str).unwrap_or_default(),
            };
            let (mut effects, rc) = crate::shell::emulate(&cmd);
            effects.push(Effect::Sleep(Duration::from_millis(*duration_ms)));
            Plan {
                effects,
                finish: Finish::Shell(rc),
                timeout,
            }
        }
        Behaviour::Lines {
            count,
            interval_ms,
            text,
            stream,
        } => {
            let n = as_u64(&render(count, ctx));
            let interval = Duration::from_millis(as_u64(&render(interval_ms, ctx)));
            let stream = if stream == "stderr" {
                "stderr"
            } else {
                "stdout"
            };
            let mut effects = Vec::new();
            for i in 1..=n {
                let mut c = ctx.clone();
                c["n"] = json!(i);
                effects.push(Effect::Out(stream, line(&py_str(&render_str(text, &c)))));
                if i < n {
                    effects.push(Effect::Sleep(interval));
                }
            }
            Plan {
                effects,
                finish: Finish::Shell(0),
                timeout,
            }
        }
        Behaviour::Workflow { .. } => Plan {
            effects: Vec::new(),
            finish: Finish::Shell(0),
            timeout: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_values_and_strings() {
        let ctx = json!({"name": "Rusty", "n": 3, "task1": {"stdout": "hi"}});
        assert_eq!(render(&json!("{{ n }}"), &ctx), json!(3));
        assert_eq!(
            render(&json!("{{name}}, {{ task1.stdout }}!"), &ctx),
            json!("Rusty, hi!")
        );
        assert_eq!(
            render(&json!({"a": ["{{missing}}"]}), &ctx),
            json!({"a": [null]})
        );
    }
}
