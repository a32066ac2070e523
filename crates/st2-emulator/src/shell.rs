//! A tiny emulated shell for `core.local`-style actions: nothing is ever executed. It understands
//! `echo`, `printf`, `sleep`, `exit`, `true`, `false`, `>&2`, and `;` / `&&` / `||` lists; any
//! other command succeeds silently.

use std::time::Duration;

/// One observable effect of a running action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Write text to `stdout` or `stderr`.
    Out(&'static str, String),
    /// Take this long.
    Sleep(Duration),
}

#[derive(Debug, PartialEq)]
enum Op {
    Seq,
    And,
    Or,
}

/// Split a command line into words and list operators, honouring quotes and backslashes.
fn lex(cmd: &str) -> Vec<Result<String, Op>> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars().peekable();
    let flush = |out: &mut Vec<Result<String, Op>>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            out.push(Ok(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    word.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            word.extend(chars.next());
                        }
                        d => word.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            ';' | '\n' => {
                flush(&mut out, &mut word, &mut in_word);
                out.push(Err(Op::Seq));
            }
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                flush(&mut out, &mut word, &mut in_word);
                out.push(Err(Op::And));
            }
            '|' if chars.peek() == Some(&'|') => {
                chars.next();
                flush(&mut out, &mut word, &mut in_word);
                out.push(Err(Op::Or));
            }
            c if c.is_whitespace() => flush(&mut out, &mut word, &mut in_word),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut out, &mut word, &mut in_word);
    out
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// Run one simple command; `None` means `exit` was called with that code.
fn run(words: &[String], effects: &mut Vec<Effect>) -> (i64, bool) {
    let mut words = words.to_vec();
    let mut stream = "stdout";
    if let Some(pos) = words.iter().position(|w| w == ">&2" || w == "1>&2") {
        words.remove(pos);
        stream = "stderr";
    }
    let Some((name, args)) = words.split_first() else {
        return (0, false);
    };
    match name.as_str() {
        "echo" => {
            let (newline, args) = match args.first() {
                Some(f) if f == "-n" => (false, &args[1..]),
                _ => (true, args),
            };
            let mut text = args.join(" ");
            if newline {
                text.push('\n');
            }
            effects.push(Effect::Out(stream, text));
            (0, false)
        }
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return (1, false);
            };
            let mut text = unescape(fmt);
            for a in rest {
                text = text.replacen("%s", a, 1);
            }
            effects.push(Effect::Out(stream, text));
            (0, false)
        }
        "sleep" => {
            let secs = args
                .first()
                .and_then(|a| a.parse::<f64>().ok())
                .unwrap_or(0.0)
                .max(0.0);
            effects.push(Effect::Sleep(Duration::from_secs_f64(secs)));
            (0, false)
        }
        "exit" => (args.first().and_then(|a| a.parse().ok()).unwrap_or(0), true),
        "false" => (1, false),
        _ => (0, false),
    }
}

/// Emulate a command line: its effects, and its exit code.
pub(crate) fn emulate(cmd: &str) -> (Vec<Effect>, i64) {
    let mut effects = Vec::new();
    let mut rc = 0;
    let mut skip = false;
    let mut words = Vec::new();
    let mut tokens = lex(cmd).into_iter().peekable();
    while let Some(tok) = tokens.next() {
        match tok {
            Ok(w) => words.push(w),
            Err(_) if words.is_empty() => {}
            Err(op) => {
                if !skip {
                    let (code, exited) = run(&words, &mut effects);
                    rc = code;
                    if exited {
                        return (effects, rc);
                    }
                }
                words.clear();
                skip = match op {
                    Op::Seq => false,
                    Op::And => rc != 0,
                    Op::Or => rc == 0,
                };
            }
        }
        if tokens.peek().is_none() && !words.is_empty() && !skip {
            rc = run(&words, &mut effects).0;
        }
    }
    (effects, rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> Effect {
        Effect::Out("stdout", s.into())
    }

    #[test]
    fn echo_exit_and_redirects() {
        assert_eq!(emulate("echo hi"), (vec![out("hi\n")], 0));
        assert_eq!(emulate("echo \"a  b\" c"), (vec![out("a  b c\n")], 0));
        assert_eq!(
            emulate("echo oops >&2; exit 3"),
            (vec![Effect::Out("stderr", "oops\n".into())], 3)
        );
        assert_eq!(emulate("false"), (vec![], 1));
        assert_eq!(
            emulate("false && echo no || echo yes"),
            (vec![out("yes\n")], 0)
        );
        assert_eq!(emulate("printf 'x=%s\\n' 5"), (vec![out("x=5\n")], 0));
        assert_eq!(
            emulate("sleep 0.5"),
            (vec![Effect::Sleep(Duration::from_millis(500))], 0)
        );
        assert_eq!(emulate("ls -la"), (vec![], 0));
    }
}
