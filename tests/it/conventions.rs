//! The ecosystem's conventions (issue 16): shell completions and a man page from the clap
//! model, logs and /metrics as Portarium's and Prometheus's tools read them.

use std::process::Command;

use crate::support::succeeded;

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");

fn generated(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    succeeded(&out, &args.join(" "))
}

/// What bash's programmable completion offers for the words typed so far (last one partial).
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portarium-st2.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={}\n\
         COMP_LINE='{}'\n\
         _portarium__st2 portarium-st2 '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .unwrap();
    succeeded(&out, "bash completion")
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completion_offers_the_commands_and_their_options() {
    let script = generated(&["completions", "bash"]);
    let mut offered = bash_completes(&script, &["portarium-st2", "co"]);
    offered.sort();
    assert_eq!(offered, ["completions", "config"], "{offered:?}");
    let offered = bash_completes(&script, &["portarium-st2", "run", "--"]);
    for want in ["--config", "--follow", "--wait-secs"] {
        assert!(offered.iter().any(|o| o == want), "{want}: {offered:?}");
    }
    let offered = bash_completes(&script, &["portarium-st2", "completions", "z"]);
    assert_eq!(offered, ["zsh"], "shell names complete too");
}

#[test]
fn completions_exist_for_every_shell_clap_knows() {
    for (shell, marker) in [
        ("zsh", "#compdef portarium-st2"),
        ("fish", "complete -c portarium-st2"),
        ("elvish", "edit:completion:arg-completer[portarium-st2]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = generated(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("wait-secs"), "{shell} knows run's options");
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("possible values: bash"), "{stderr}");
}

#[test]
fn manpage_renders_every_command_and_option() {
    let roff = generated(&["manpage"]);
    assert!(roff.contains("\n.TH portarium-st2 1 "), "{roff}");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("portarium-st2.1");
    std::fs::write(&page, &roff).unwrap();
    // man itself formats it, so a roff error would show as missing text.
    let out = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "200")
        .output()
        .unwrap();
    let text = succeeded(&out, "man -l");
    for want in [
        "portarium-st2 - Run Portarium action dispatches",
        "PORTARIUM-ST2 SERVE",
        "PORTARIUM-ST2 RUN",
        "portarium-st2 run [-c|--config] [-f|--follow] [--wait-secs]",
        "PORTARIUM-ST2 CONFIG CHECK",
        "PORTARIUM-ST2 TELEMETRY SCRAPE",
        "PORTARIUM-ST2 COMPLETIONS",
        "--emulator",
        "PORTARIUM_ST2_CONFIG",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}
