//! Following one st2 execution until it completes or the caller's deadline passes, through
//! the dispatcher's watcher (st2's event stream, or its poll loop).

use std::sync::Arc;

use tokio::time::Instant;

use super::validate::ActionRef;
use super::{Dispatcher, from_st2, outcome};
use crate::core::portarium::ErrorKind;
use crate::core::{DispatchError, Dispatched};
use st2_client::stream::WaitError;
use st2_client::{Execution, ExecutionStatus};

impl Dispatcher {
    /// Waits for the first terminal event of `execution`; at `deadline` it answers `Timeout`
    /// naming the execution, which keeps running. The wait costs no st2 read while the
    /// stream is up (the watcher's poll loop reads while it is down or disabled).
    pub(super) async fn follow(
        &self,
        execution: Execution,
        action: &ActionRef,
        deadline: Instant,
    ) -> Result<Dispatched, DispatchError> {
        let created_status = execution.status.clone();
        match self.watcher.wait_head(Arc::new(execution), deadline).await {
            Ok(done) => match done.status.clone() {
                Some(status) => outcome(&done, &status),
                None => Err(still_running(&done.id, None)),
            },
            Err(WaitError::Deadline { id, last_status }) => {
                Err(still_running(&id, last_status.or(created_status).as_ref()))
            }
            Err(WaitError::Gone { id }) => Err(disappeared(&id)),
            Err(WaitError::St2 { source, .. }) => Err(from_st2(&source, action)),
        }
    }
}

/// The answer when the deadline passed first.
fn still_running(id: &str, status: Option<&ExecutionStatus>) -> DispatchError {
    let status = status.map_or("unknown", ExecutionStatus::as_str);
    DispatchError::new(
        ErrorKind::Timeout,
        format!(
            "st2 execution {id} is still {status}; it keeps running — retry with the same idempotency key to keep waiting for it"
        ),
    )
}

fn disappeared(id: &str) -> DispatchError {
    DispatchError::new(
        ErrorKind::RemoteError,
        format!("st2 execution {id} disappeared while it was followed"),
    )
}
