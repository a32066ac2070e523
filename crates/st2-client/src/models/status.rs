//! `ExecutionStatus`: the 14 values of `st2common/constants/action.py` and st2's sets of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An execution's status: every value st2 defines, plus [`ExecutionStatus::Unknown`] so a
/// value added by a future st2 still decodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    /// Created by the API, waiting for the scheduler.
    Requested,
    /// Picked by the scheduler, waiting for a runner.
    Scheduled,
    /// Held back by `delay` or a concurrency policy.
    Delayed,
    /// A runner is executing it.
    Running,
    /// Finished successfully (completed).
    Succeeded,
    /// Finished with an error (completed).
    Failed,
    /// Ran past its timeout (completed); st2 spells it `timeout`.
    Timeout,
    /// Its runner shut down mid-run (completed).
    Abandoned,
    /// Cancellation requested, the runner is stopping it.
    Canceling,
    /// Cancelled (completed).
    Canceled,
    /// Waiting on an inquiry (`core.ask`).
    Pending,
    /// Workflow pause requested.
    Pausing,
    /// Workflow paused; not completed.
    Paused,
    /// Workflow resume requested.
    Resuming,
    /// A status this version does not know, kept verbatim.
    Unknown(String),
}

impl ExecutionStatus {
    /// Every status st2 defines, in st2's own order.
    pub const ALL: [ExecutionStatus; 14] = [
        Self::Requested,
        Self::Scheduled,
        Self::Delayed,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Timeout,
        Self::Abandoned,
        Self::Canceling,
        Self::Canceled,
        Self::Pending,
        Self::Pausing,
        Self::Paused,
        Self::Resuming,
    ];

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Requested => "requested",
            Self::Scheduled => "scheduled",
            Self::Delayed => "delayed",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Abandoned => "abandoned",
            Self::Canceling => "canceling",
            Self::Canceled => "canceled",
            Self::Pending => "pending",
            Self::Pausing => "pausing",
            Self::Paused => "paused",
            Self::Resuming => "resuming",
            Self::Unknown(s) => s,
        }
    }

    /// st2's `LIVEACTION_COMPLETED_STATES`: the execution will not change status again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Timeout | Self::Canceled | Self::Abandoned
        )
    }

    /// st2's `LIVEACTION_FAILED_STATES`.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed | Self::Timeout | Self::Abandoned)
    }

    /// st2's `LIVEACTION_CANCELABLE_STATES`: a cancel request is accepted.
    pub fn is_cancelable(&self) -> bool {
        matches!(
            self,
            Self::Requested
                | Self::Scheduled
                | Self::Delayed
                | Self::Running
                | Self::Pausing
                | Self::Paused
                | Self::Resuming
        )
    }

    /// st2's `LIVEACTION_PAUSE_STATES`: pausing or paused.
    pub fn is_paused(&self) -> bool {
        matches!(self, Self::Pausing | Self::Paused)
    }
}

impl FromStr for ExecutionStatus {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::ALL
            .iter()
            .find(|known| known.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Self::Unknown(s.to_string())))
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ExecutionStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ExecutionStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        let Ok(status) = s.parse();
        Ok(status)
    }
}
