//! `portarium-st2 run`: run one st2 action from a terminal, like `st2 run`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::core::dispatch::validate::{ActionRef, check_parameters};
use st2_client::models::{ActionParameters, JsonObject, OutputChunk};
use st2_client::stream::{ExecutionWatcher, WaitError};
use st2_client::{Execution, ExecutionRequest, St2Client, St2Error};

/// Why `run` could not start or follow the action.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An argument is not `key=value`, or the ref is not `pack.action`.
    #[error("{0}")]
    Usage(String),
    /// The parameters do not fit the action's schema.
    #[error("parameters do not fit {action}:\n{}", problems.join("\n"))]
    Parameters {
        /// The action.
        action: String,
        /// One line per bad field.
        problems: Vec<String>,
    },
    /// st2 refused or failed.
    #[error(transparent)]
    St2(#[from] St2Error),
    /// st2 lost the execution while it was followed (404).
    #[error("execution {id} disappeared while it was followed")]
    Gone {
        /// The execution id.
        id: String,
    },
    /// Reading the execution failed for a reason following will not cure.
    #[error(transparent)]
    Following(Arc<St2Error>),
    /// The action did not complete within the wait; it keeps running in st2.
    #[error("execution {id} is still {status} after {} s; it keeps running in st2", waited.as_secs())]
    StillRunning {
        /// The execution id.
        id: String,
        /// Its last status.
        status: String,
        /// How long `run` waited.
        waited: Duration,
    },
}

/// Turns `key=value` arguments into parameters: a value is JSON when the parameter is not a
/// string and the text parses as JSON (`count=3`, `env={"A":"1"}`), otherwise the text itself.
pub fn parse_parameters(
    schema: &ActionParameters,
    args: &[String],
) -> Result<JsonObject, RunError> {
    let mut params = JsonObject::new();
    for arg in args {
        let (key, text) = arg
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| RunError::Usage(format!("{arg:?} is not key=value")))?;
        let is_string = schema
            .parameters
            .get(key)
            .and_then(|p| p.kind.as_ref())
            .is_some_and(|k| k == "string");
        let value = match serde_json::from_str::<Value>(text) {
            Ok(v) if !is_string => v,
            _ => Value::String(text.to_string()),
        };
        params.insert(key.to_string(), value);
    }
    Ok(params)
}

/// Starts `action_ref` with `args`, follows it through `watcher` for up to `wait` (printing
/// its output as it arrives when `follow`), and returns the completed execution.
pub async fn run(
    st2: &St2Client,
    watcher: &ExecutionWatcher,
    action_ref: &str,
    args: &[String],
    follow: bool,
    wait: Duration,
    out: &mut (dyn Write + Send),
) -> Result<Execution, RunError> {
    let action = ActionRef::parse(action_ref).map_err(|e| RunError::Usage(e.to_string()))?;
    let schema = st2.action_parameters(&action.to_string()).await?;
    let parameters = parse_parameters(&schema, args)?;
    let problems = check_parameters(&schema, &parameters);
    if !problems.is_empty() {
        return Err(RunError::Parameters {
            action: action.to_string(),
            problems: problems.iter().map(|p| format!("  {p}")).collect(),
        });
    }
    let mut request = ExecutionRequest::new(action.to_string());
    request.parameters = parameters;
    let created = st2.executions().create(&request).await?;
    let _ = writeln!(out, "execution {} ({})", created.id, action);
    follow_to_end(watcher, &created, follow, wait, out).await
}

/// Waits up to `wait` for `created` to complete through `watcher`, printing its output as it
/// arrives when `follow`; the completed execution, or why it is not known to be complete.
pub async fn follow_to_end(
    watcher: &ExecutionWatcher,
    created: &Execution,
    follow: bool,
    wait: Duration,
    out: &mut (dyn Write + Send),
) -> Result<Execution, RunError> {
    let deadline = tokio::time::Instant::now() + wait;
    let done = if follow {
        let print = |chunk: OutputChunk| {
            let _ = out.write_all(chunk.data.as_bytes());
        };
        watcher
            .follow(&created.id)
            .until_terminal(deadline, print)
            .await
    } else {
        watcher.wait_for(created, deadline).await
    };
    done.map_err(|e| match e {
        WaitError::Deadline { id, last_status } => RunError::StillRunning {
            id,
            status: last_status
                .or_else(|| created.status.clone())
                .map_or_else(|| "unknown".into(), |s| s.to_string()),
            waited: wait,
        },
        WaitError::Gone { id } => RunError::Gone { id },
        WaitError::St2 { source, .. } => RunError::Following(source),
    })
}
