//! Every error message the code can show a user is in `docs/troubleshooting.md`.
//!
//! Messages are the `#[error("…")]` texts of every error enum under `src/`; each is matched by
//! its longest fixed piece (the text between `{…}` placeholders), so a reworded or new message
//! fails this test until the page says what it means.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

/// The `#[error("…")]` format strings in `text`, as written in the source.
fn messages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[error(") {
        rest = &rest[at + "#[error(".len()..];
        let Some(open) = rest.trim_start().strip_prefix('"') else {
            continue; // #[error(transparent)]
        };
        let mut message = String::new();
        let mut chars = open.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    message.push(c);
                    message.extend(chars.next());
                }
                '"' => break,
                c => message.push(c),
            }
        }
        out.push(message);
    }
    out
}

/// The longest piece of `message` that is not a placeholder.
fn anchor(message: &str) -> String {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut depth = 0;
    for c in message.chars() {
        match c {
            '{' => {
                depth += 1;
                pieces.push(std::mem::take(&mut piece));
            }
            '}' if depth > 0 => depth -= 1,
            c if depth == 0 => piece.push(c),
            _ => {}
        }
    }
    pieces.push(piece);
    pieces
        .into_iter()
        .map(|p| p.trim().to_string())
        .max_by_key(String::len)
        .unwrap_or_default()
}

#[test]
fn every_error_message_is_explained_in_the_troubleshooting_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/troubleshooting.md")).unwrap();
    let mut files = Vec::new();
    for dir in ["src", "crates/st2-client/src", "crates/st2-basics/src"] {
        sources(&root.join(dir), &mut files);
    }
    let mut checked = 0;
    let mut missing = Vec::new();
    for (file, text) in &files {
        for message in messages(text) {
            let anchor = anchor(&message);
            // Bare wrappers (`{0}`, `{source}`) show the inner message, documented on its own.
            if anchor.len() < 8 {
                continue;
            }
            checked += 1;
            if !page.contains(&anchor) {
                missing.push(format!("{file}: {message}"));
            }
        }
    }
    assert!(checked > 50, "the scan found the messages ({checked})");
    assert!(
        missing.is_empty(),
        "not in docs/troubleshooting.md:\n{}",
        missing.join("\n")
    );
}
