//! `portarium-st2 execution get|list|tail|cancel|re-run`: st2's execution commands, with the
//! `st2` CLI's output (fields one per line, a table for lists) and its `-j` for JSON.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use st2_client::api::executions::{CancelOutcome, RerunRequest};
use st2_client::stream::ExecutionWatcher;
use st2_client::{Execution, St2Client, St2Error};

use super::run::{RunError, follow_to_end, parse_parameters};

/// Most executions `list` shows (st2's `-n` has no bound; one page of st2's API is 100).
const MAX_LIST: u32 = 100;

/// Options every execution command takes.
#[derive(Args)]
pub struct Common {
    /// The adapter config naming the st2 cluster; without it, st2client's own settings
    /// (ST2_* variables and ~/.st2/config) are used, as by the st2 CLI.
    #[arg(short, long, env = crate::config::ENV_CONFIG_FILE)]
    config: Option<PathBuf>,
    /// Print JSON, as `st2 ... -j` does.
    #[arg(short, long)]
    json: bool,
}

/// The `execution` commands.
#[derive(Subcommand)]
pub enum ExecutionCommand {
    /// Show one execution, like `st2 execution get`.
    ///
    /// Exit code: 0 when shown, 2 when st2 has no such execution, 4 when st2 could not be used.
    Get {
        #[command(flatten)]
        common: Common,
        /// The execution id.
        id: String,
    },
    /// List the latest executions, newest first, like `st2 execution list`.
    List {
        #[command(flatten)]
        common: Common,
        /// How many (at most 100).
        #[arg(short = 'n', long = "last", default_value_t = 50)]
        last: u32,
        /// Only executions of this action ref.
        #[arg(long)]
        action: Option<String>,
        /// Only executions in this status (e.g. failed).
        #[arg(long)]
        status: Option<String>,
    },
    /// Print an execution's output as it arrives until it completes, like
    /// `st2 execution tail`.
    ///
    /// Exit code: as `run`: 0 succeeded, 1 failed, 3 still running after --wait-secs.
    Tail {
        #[command(flatten)]
        common: Common,
        /// Stop following after this long (the execution keeps running in st2).
        #[arg(long, default_value_t = 600)]
        wait_secs: u64,
        /// The execution id.
        id: String,
    },
    /// Cancel executions, like `st2 execution cancel`.
    ///
    /// Exit code: 0 when each was cancelled or had already completed, 2 for an unknown id.
    Cancel {
        #[command(flatten)]
        common: Common,
        /// The execution ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Run an execution's action again with its parameters (key=value overrides them) and
    /// wait for it, like `st2 execution re-run`.
    ///
    /// Exit code: as `run`.
    #[command(name = "re-run")]
    ReRun {
        #[command(flatten)]
        common: Common,
        /// Stop waiting after this long (the execution keeps running in st2).
        #[arg(long, default_value_t = 600)]
        wait_secs: u64,
        /// The execution to run again.
        id: String,
        /// Parameters to change, as key=value.
        params: Vec<String>,
    },
}

impl ExecutionCommand {
    fn common(&self) -> &Common {
        match self {
            Self::Get { common, .. }
            | Self::List { common, .. }
            | Self::Tail { common, .. }
            | Self::Cancel { common, .. }
            | Self::ReRun { common, .. } => common,
        }
    }
}

/// Runs one `execution` command; the exit code follows `st2`'s habits and `run`'s table.
pub async fn execute(command: ExecutionCommand) -> ExitCode {
    let common = command.common();
    let json = common.json;
    let (config, client) = match super::config_and_client(common.config.as_deref()) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout();
    let out: &mut (dyn Write + Send) = &mut stdout;
    let done = match command {
        ExecutionCommand::Get { id, .. } => get(&client, &id, json, out).await,
        ExecutionCommand::List {
            last,
            action,
            status,
            ..
        } => list(&client, last, action, status, json, out).await,
        ExecutionCommand::Tail { id, wait_secs, .. } => {
            let watcher = ExecutionWatcher::start(client.clone(), config.st2.stream.clone());
            tail(&client, &watcher, &id, wait_secs, json, out).await
        }
        ExecutionCommand::Cancel { ids, .. } => cancel(&client, &ids, json, out).await,
        ExecutionCommand::ReRun {
            id,
            params,
            wait_secs,
            ..
        } => {
            let watcher = ExecutionWatcher::start(client.clone(), config.st2.stream.clone());
            rerun(&client, &watcher, &id, &params, wait_secs, json, out).await
        }
    };
    match done {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `run`'s exit codes for a failure.
pub fn exit_code(e: &RunError) -> u8 {
    match e {
        RunError::Usage(_)
        | RunError::Parameters { .. }
        | RunError::St2(St2Error::NotFound { .. } | St2Error::BadRequest { .. }) => {
            super::EXIT_USAGE
        }
        RunError::StillRunning { .. } => 3,
        RunError::St2(_) | RunError::Gone { .. } | RunError::Following(_) => 4,
    }
}

/// 0 when `execution` succeeded, 1 otherwise.
pub fn outcome_code(execution: &Execution) -> ExitCode {
    let succeeded = execution
        .status
        .as_ref()
        .is_some_and(|s| s.to_string() == "succeeded");
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn get(
    st2: &St2Client,
    id: &str,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, RunError> {
    let execution = st2.executions().get(id).send().await?;
    print_execution(&execution, json, out);
    Ok(ExitCode::SUCCESS)
}

async fn list(
    st2: &St2Client,
    last: u32,
    action: Option<String>,
    status: Option<String>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, RunError> {
    if !(1..=MAX_LIST).contains(&last) {
        return Err(RunError::Usage(format!(
            "-n {last} is outside 1..={MAX_LIST}; list fewer executions"
        )));
    }
    let mut query = st2.executions().list().limit(last);
    if let Some(action) = &action {
        query = query.action(action);
    }
    if let Some(status) = &status {
        let status = serde_json::from_value(Value::String(status.clone()))
            .map_err(|_| RunError::Usage(format!("{status:?} is not an st2 execution status")))?;
        query = query.status(&status);
    }
    let page = query.send().await?;
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&page.items).unwrap_or_default()
        );
    } else {
        let rows: Vec<[String; 6]> = page
            .items
            .iter()
            .map(|e| {
                [
                    e.id.clone(),
                    action_ref(e),
                    e.context
                        .get("user")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    status_text(e),
                    timestamp(e.start_timestamp),
                    timestamp(e.end_timestamp),
                ]
            })
            .collect();
        let _ = out.write_all(
            table(
                [
                    "id",
                    "action.ref",
                    "context.user",
                    "status",
                    "start_timestamp",
                    "end_timestamp",
                ],
                &rows,
            )
            .as_bytes(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn tail(
    st2: &St2Client,
    watcher: &ExecutionWatcher,
    id: &str,
    wait_secs: u64,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, RunError> {
    let execution = st2.executions().get(id).send().await?;
    let done = follow_to_end(
        watcher,
        &execution,
        true,
        Duration::from_secs(wait_secs),
        out,
    )
    .await?;
    if json {
        print_execution(&done, true, out);
    } else {
        let _ = writeln!(
            out,
            "Execution {} has completed (status={}).",
            done.id,
            status_word(&done)
        );
    }
    Ok(outcome_code(&done))
}

async fn cancel(
    st2: &St2Client,
    ids: &[String],
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, RunError> {
    let mut answers = Vec::new();
    for id in ids {
        let answer = match st2.executions().cancel(id).await? {
            CancelOutcome::Canceled(execution) => {
                let line = format!(
                    "{} execution with id {} {}.",
                    action_ref(&execution),
                    execution.id,
                    if status_word(&execution) == "canceled" {
                        "canceled"
                    } else {
                        "requested to be canceled"
                    }
                );
                (line, serde_json::to_value(&*execution).unwrap_or_default())
            }
            CancelOutcome::AlreadyCompleted { faultstring } => (
                format!("Execution {id} was not canceled: {faultstring}"),
                serde_json::json!({"id": id, "faultstring": faultstring}),
            ),
        };
        answers.push(answer);
    }
    if json {
        let all: Vec<&Value> = answers.iter().map(|(_, v)| v).collect();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&all).unwrap_or_default()
        );
    } else {
        for (line, _) in &answers {
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn rerun(
    st2: &St2Client,
    watcher: &ExecutionWatcher,
    id: &str,
    params: &[String],
    wait_secs: u64,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, RunError> {
    let original = st2.executions().get(id).send().await?;
    let parameters = if params.is_empty() {
        Default::default()
    } else {
        let action = original.action.as_ref().and_then(|a| a.r#ref.clone());
        let action =
            action.ok_or_else(|| RunError::Usage(format!("execution {id} names no action")))?;
        parse_parameters(&st2.action_parameters(&action).await?, params)?
    };
    let request = RerunRequest {
        parameters,
        ..Default::default()
    };
    let created = st2.executions().rerun(id, &request).await?;
    if !json {
        let _ = writeln!(out, "execution {} (re-run of {id})", created.id);
    }
    let done = follow_to_end(
        watcher,
        &created,
        false,
        Duration::from_secs(wait_secs),
        out,
    )
    .await?;
    print_execution(&done, json, out);
    Ok(outcome_code(&done))
}

/// One execution as `st2 execution get` prints it, or as JSON.
pub fn print_execution(execution: &Execution, json: bool, out: &mut (dyn Write + Send)) {
    let text = if json {
        serde_json::to_string_pretty(execution).unwrap_or_default() + "\n"
    } else {
        human(execution)
    };
    let _ = out.write_all(text.as_bytes());
}

/// The `st2 execution get` layout: one `field: value` per line, nested values indented.
fn human(e: &Execution) -> String {
    let mut out = format!("id: {}\naction.ref: {}\n", e.id, action_ref(e));
    if !e.parameters.is_empty() {
        out.push_str("parameters: \n");
        out.push_str(&indented(&Value::Object(e.parameters.clone())));
    }
    out.push_str(&format!("status: {}\n", status_text(e)));
    out.push_str(&format!(
        "start_timestamp: {}\nend_timestamp: {}\n",
        timestamp(e.start_timestamp),
        timestamp(e.end_timestamp)
    ));
    if let Some(result) = &e.result {
        out.push_str("result: \n");
        out.push_str(&indented(result));
    }
    out
}

/// `value` as YAML, each line indented by two spaces.
fn indented(value: &Value) -> String {
    serde_norway::to_string(value)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect()
}

fn action_ref(e: &Execution) -> String {
    e.action
        .as_ref()
        .and_then(|a| a.r#ref.clone())
        .unwrap_or_default()
}

fn status_word(e: &Execution) -> String {
    e.status.as_ref().map(|s| s.to_string()).unwrap_or_default()
}

/// `succeeded (2s elapsed)`, as st2 shows a completed status.
fn status_text(e: &Execution) -> String {
    match e.elapsed_seconds {
        Some(s) => format!("{} ({}s elapsed)", status_word(e), s.round()),
        None => status_word(e),
    }
}

fn timestamp(t: Option<time::OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_default()
}

/// A table framed as st2's (`+----+`, `| a  |`), columns as wide as their widest cell.
fn table<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        cells
            .zip(widths.iter())
            .map(|(c, w)| format!("| {c:<w$} "))
            .collect::<String>()
            + "|\n"
    };
    let mut out = rule.clone();
    out.push_str(&line(&mut headers.iter().copied()));
    out.push_str(&rule);
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn tables_are_framed_like_st2s() {
        let t = table(["id", "status"], &[["abc".into(), "succeeded".into()]]);
        assert_eq!(
            t,
            "+-----+-----------+\n| id  | status    |\n+-----+-----------+\n| abc | succeeded |\n+-----+-----------+\n"
        );
    }
}
