//! Which st2 actions a tenant may run: `allowed_actions` patterns from its config.

/// A tenant's allowed actions: exact refs (`linux.check_loadavg`) or patterns with `*`
/// (`core.*`, `linux.check_*`, `*`). No list means every action (subject to the pack gate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedActions(Option<Vec<String>>);

impl AllowedActions {
    /// From the config's `allowed_actions` (absent: unrestricted).
    pub fn new(patterns: Option<Vec<String>>) -> Self {
        Self(patterns)
    }

    /// Whether `action` (an st2 ref) matches one of the patterns.
    pub fn permits(&self, action: &str) -> bool {
        match &self.0 {
            None => true,
            Some(patterns) => patterns.iter().any(|p| glob(p, action)),
        }
    }

    /// The reason a pattern cannot be used, if any.
    pub fn check_pattern(pattern: &str) -> Option<&'static str> {
        if pattern.is_empty() {
            Some("must not be empty")
        } else if !pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'*'))
        {
            Some("use st2 action refs and '*' only, e.g. core.* or linux.check_loadavg")
        } else {
            None
        }
    }
}

/// `*` matches any run of characters (dots included); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no '*': exact
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_refs() {
        let a = AllowedActions::new(Some(vec!["core.*".into(), "linux.check_loadavg".into()]));
        assert!(a.permits("core.echo") && a.permits("linux.check_loadavg"));
        assert!(
            !a.permits("linux.rm")
                && !a.permits("corex.echo")
                && !a.permits("linux.check_loadavg2")
        );
        let b = AllowedActions::new(Some(vec!["linux.check_*".into(), "*.read_*_x".into()]));
        assert!(b.permits("linux.check_disk") && b.permits("itsm.read_a_x"));
        assert!(!b.permits("linux.ch") && !b.permits("itsm.read_a_y"));
        assert!(AllowedActions::new(None).permits("anything.at_all"));
        assert!(!AllowedActions::new(Some(vec![])).permits("core.echo"));
        assert!(AllowedActions::check_pattern("core.* ; rm").is_some());
    }
}
