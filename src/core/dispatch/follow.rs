//! Following one st2 execution until it completes or the caller's deadline passes: through
//! the stream watcher when there is one, by polling otherwise.

use std::time::Duration;

use tokio::time::Instant;

use super::validate::ActionRef;
use super::{Dispatcher, from_st2, outcome};
use crate::core::portarium::{DispatchResult, ErrorKind};
use st2_client::stream::WaitError;
use st2_client::{Execution, ExecutionStatus, St2Error};

/// First and longest pause between two status reads while polling an execution.
const POLL_FIRST: Duration = Duration::from_millis(25);
const POLL_MAX: Duration = Duration::from_millis(500);

impl Dispatcher {
    /// Waits for `execution` to reach a completed status; at `deadline` it answers `Timeout`
    /// naming the execution, which keeps running. With a watcher the wait costs no st2 read
    /// while the stream is up (the watcher itself reads while it is down).
    pub(super) async fn follow(
        &self,
        execution: Execution,
        action: &ActionRef,
        deadline: Instant,
    ) -> DispatchResult {
        let Some(watcher) = &self.watcher else {
            return self.poll(execution, action, deadline).await;
        };
        match watcher.wait_for(&execution, deadline).await {
            Ok(done) => match done.status.clone() {
                Some(status) => outcome(&done, &status),
                None => still_running(&done.id, None),
            },
            Err(WaitError::Deadline { id, last_status }) => {
                still_running(&id, last_status.or(execution.status).as_ref())
            }
            Err(WaitError::Gone { id }) => disappeared(&id),
            Err(WaitError::St2 { source, .. }) => from_st2(&source, action),
        }
    }

    /// Reads the execution with growing pauses until it completes.
    async fn poll(
        &self,
        mut execution: Execution,
        action: &ActionRef,
        deadline: Instant,
    ) -> DispatchResult {
        let mut pause = POLL_FIRST;
        loop {
            if let Some(status) = execution
                .status
                .clone()
                .filter(ExecutionStatus::is_terminal)
            {
                return outcome(&execution, &status);
            }
            let now = Instant::now();
            if now >= deadline {
                return still_running(&execution.id, execution.status.as_ref());
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(POLL_MAX);
            match self.st2.executions().get(&execution.id).send().await {
                Ok(fresh) => execution = fresh,
                // A transient read failure is not the execution's outcome: keep following.
                Err(e) if e.is_transient() => {}
                Err(St2Error::NotFound { .. }) => return disappeared(&execution.id),
                Err(e) => return from_st2(&e, action),
            }
        }
    }
}

/// The answer when the deadline passed first.
fn still_running(id: &str, status: Option<&ExecutionStatus>) -> DispatchResult {
    let status = status.map_or("unknown", ExecutionStatus::as_str);
    DispatchResult::err(
        ErrorKind::Timeout,
        format!(
            "st2 execution {id} is still {status}; it keeps running — retry with the same idempotency key to keep waiting for it"
        ),
    )
}

fn disappeared(id: &str) -> DispatchResult {
    DispatchResult::err(
        ErrorKind::RemoteError,
        format!("st2 execution {id} disappeared while it was followed"),
    )
}
