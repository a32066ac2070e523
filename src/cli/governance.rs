//! `manifest check`, `packs audit` and `audit verify`: the governance checks an operator or a
//! CI job runs.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config;
use crate::core::governance::anchor::Anchor;
use crate::core::governance::packs::{PacksPolicy, Verdict, audit_cluster};
use crate::core::governance::{audit, manifest};
use clap::Subcommand;

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_ST2: u8 = 4;

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Validate with Portarium's registration rules and ours; one line per violation, each
    /// starting with its path (`[document].field...`). Exits 1 on any violation.
    Check {
        /// The manifest.
        #[arg(default_value = "adapter-manifest.yaml")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum PacksCommand {
    /// List every pack installed on st2 with its verdict (approved, unreviewed, version drift,
    /// license not allowed). Exits 1 when a reviewed pack fails (or, with --strict, when any
    /// installed pack is not approved), 4 when st2 cannot be asked.
    Audit {
        /// The config naming st2, its credentials and governance.packs_policy.
        #[arg(short, long, env = config::ENV_CONFIG_FILE)]
        config: Option<PathBuf>,
        /// The packs policy, instead of governance.packs_policy.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Fail on unreviewed packs too.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check every record's hash and chain link; name the first broken record. Exits 1 when
    /// the chain is broken.
    Verify {
        /// The JSONL audit log.
        file: PathBuf,
        /// The HMAC key (`env:NAME`, `file:PATH` or the value): also check every record's
        /// HMAC, so records appended or re-chained without the key are named.
        #[arg(long)]
        key: Option<String>,
        /// An anchor file (`governance.audit.anchor_file`): check the log still reaches its
        /// last anchor unchanged, so a cut tail or head is named.
        #[arg(long, conflicts_with = "anchor_head")]
        anchor: Option<PathBuf>,
        /// An anchor from a log line (`audit_anchor=SEQ:HASH`), checked as `--anchor` is.
        #[arg(long)]
        anchor_head: Option<String>,
    },
}

pub fn manifest(command: ManifestCommand) -> ExitCode {
    let ManifestCommand::Check { file } = command;
    match manifest::check_file(&file) {
        Ok(registrations) => {
            let families: Vec<&str> = registrations
                .iter()
                .map(|r| r.port_family.as_str())
                .collect();
            println!("{}: valid ({})", file.display(), families.join(", "));
            ExitCode::SUCCESS
        }
        Err(manifest::ManifestError::Unusable(v)) => {
            eprintln!("{v}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(manifest::ManifestError::Invalid(violations)) => {
            for v in &violations {
                eprintln!("{v}");
            }
            eprintln!("{}: {} violation(s)", file.display(), violations.len());
            ExitCode::from(EXIT_FAILED)
        }
    }
}

pub fn packs(command: PacksCommand) -> ExitCode {
    let PacksCommand::Audit {
        config,
        policy,
        strict,
    } = command;
    let (config, client) = match super::config_and_client(config.as_deref()) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let Some(path) = policy.or(config.governance.packs_policy.clone()) else {
        eprintln!("no packs policy: set governance.packs_policy or pass --policy FILE");
        return ExitCode::from(EXIT_USAGE);
    };
    let policy = match PacksPolicy::load(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let lines = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(audit_cluster(&client, &policy)),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let lines = match lines {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot list st2's packs: {e}");
            return ExitCode::from(EXIT_ST2);
        }
    };
    let mut failed = 0;
    for l in &lines {
        let fails = match l.verdict {
            Verdict::Approved => false,
            Verdict::Unreviewed => strict,
            _ => true,
        };
        failed += usize::from(fails);
        println!(
            "{:<24} {:<12} {}{}",
            l.pack,
            l.installed.as_deref().unwrap_or("-"),
            l.verdict.label(),
            if fails { "  FAIL" } else { "" }
        );
        if !matches!(l.verdict, Verdict::Approved) {
            println!("    {}", l.verdict);
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} governed pack(s) fail the policy {}",
            path.display()
        );
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn audit(command: AuditCommand) -> ExitCode {
    let AuditCommand::Verify {
        file,
        key,
        anchor,
        anchor_head,
    } = command;
    let key = match key.as_deref().map(st2_client::Secret::resolve).transpose() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("--key: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let anchor = match (anchor, anchor_head) {
        (Some(path), _) => match Anchor::last_in(&path) {
            Ok(Some(a)) => Some(a),
            Ok(None) => {
                eprintln!("{}: holds no anchor", path.display());
                return ExitCode::from(EXIT_USAGE);
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
        (None, Some(head)) => match Anchor::parse(&head) {
            Some(a) => Some(a),
            None => {
                eprintln!(
                    "--anchor-head {head:?}: write SEQUENCE:HASH as the audit anchor log line gives it"
                );
                return ExitCode::from(EXIT_USAGE);
            }
        },
        (None, None) => None,
    };
    let key_bytes = key.as_ref().map(|k| k.expose().as_bytes());
    match audit::verify_with(&file, key_bytes, anchor.as_ref()) {
        Ok(head) => {
            let checked = match (&key, &anchor) {
                (Some(_), Some(a)) => format!("; HMAC holds; reaches the anchor at record {}", a.sequence),
                (Some(_), None) => "; HMAC holds; no anchor given, so a cut tail is not detected".into(),
                (None, Some(a)) => format!("; reaches the anchor at record {}; no key given, so rewriting is detected only up to the anchor", a.sequence),
                (None, None) => "; unkeyed and unanchored: whoever can write the file could have rewritten it consistently".into(),
            };
            println!(
                "{}: chain intact, {} record(s), head {}{checked}",
                file.display(),
                head.records,
                head.head_hash.as_deref().unwrap_or("-")
            );
            ExitCode::SUCCESS
        }
        Err(audit::VerifyError::Io(e)) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(EXIT_USAGE)
        }
        Err(audit::VerifyError::Broken(brk)) => {
            eprintln!("{}: {brk}", file.display());
            ExitCode::from(EXIT_FAILED)
        }
    }
}
