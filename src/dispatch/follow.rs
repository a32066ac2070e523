//! Following one st2 execution until it completes or the caller's deadline passes.

use std::time::Duration;

use tokio::time::Instant;

use super::validate::ActionRef;
use super::{Dispatcher, from_st2, outcome};
use crate::portarium::{DispatchResult, ErrorKind};
use crate::st2::{Execution, ExecutionStatus, St2Error};

/// First and longest pause between two status reads while following an execution.
const POLL_FIRST: Duration = Duration::from_millis(25);
const POLL_MAX: Duration = Duration::from_millis(500);

impl Dispatcher {
    /// Waits for `execution` to reach a completed status; at `deadline` it answers `Timeout`
    /// naming the execution, which keeps running.
    pub(super) async fn follow(
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
                let status = execution.status.as_ref().map_or("unknown", |s| s.as_str());
                return DispatchResult::err(
                    ErrorKind::Timeout,
                    format!(
                        "st2 execution {} is still {status}; it keeps running — retry with the same idempotency key to keep waiting for it",
                        execution.id
                    ),
                );
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(POLL_MAX);
            match self.st2.executions().get(&execution.id).send().await {
                Ok(fresh) => execution = fresh,
                // A transient read failure is not the execution's outcome: keep following.
                Err(e) if e.is_transient() => {}
                Err(St2Error::NotFound { .. }) => {
                    return DispatchResult::err(
                        ErrorKind::RemoteError,
                        format!(
                            "st2 execution {} disappeared while it was followed",
                            execution.id
                        ),
                    );
                }
                Err(e) => return from_st2(&e, action),
            }
        }
    }
}
