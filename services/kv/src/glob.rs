//! Redis-style glob matching for `KEYS`: `*`, `?`, `[abc]`, `[a-z]`,
//! `[^abc]` and `\` to escape the next character. Bytes, not characters.

/// Whether `text` matches `pattern` as a whole.
///
/// Greedy matching that backtracks only to the most recent `*`, so the cost
/// is O(pattern × text) even for patterns like `*a*a*a*b`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After a `*`: where the pattern goes on, and the text position the
    // star's match currently ends at.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            star = Some((p, t));
            continue;
        }
        if p < pattern.len()
            && let Some(next) = match_one(pattern, p, text[t])
        {
            p = next;
            t += 1;
            continue;
        }
        // Mismatch: let the last star swallow one more byte, or give up.
        let Some((after_star, star_end)) = star else {
            return false;
        };
        p = after_star;
        t = star_end + 1;
        star = Some((after_star, t));
    }
    while pattern.get(p) == Some(&b'*') {
        p += 1;
    }
    p == pattern.len()
}

/// Matches the single-byte item (not `*`) at `pattern[p]` against `byte`;
/// returns the index just after the item when it matches.
fn match_one(pattern: &[u8], p: usize, byte: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte).then_some(p + 2),
        b'[' => match_class(pattern, p + 1, byte),
        literal => (literal == byte).then_some(p + 1),
    }
}

/// Matches a `[...]` class whose body starts at `pattern[p]`. An unclosed
/// class ends with the pattern, as in Redis.
fn match_class(pattern: &[u8], mut p: usize, byte: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut found = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            found |= pattern[p + 1] == byte;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (a, b) = (pattern[p], pattern[p + 2]);
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            found |= (low..=high).contains(&byte);
            p += 3;
        } else {
            found |= pattern[p] == byte;
            p += 1;
        }
    }
    // Skip the closing `]` if there is one.
    let next = (p + 1).min(pattern.len());
    (found != negate).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(pattern: &str, text: &str) -> bool {
        matches(pattern.as_bytes(), text.as_bytes())
    }

    #[test]
    fn basics() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("user:*", "user:42"));
        assert!(!m("user:*", "users:42"));
        assert!(m("*:42", "user:42"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(!m("a*b*c", "aXbY"));
        assert!(m("**a**", "bab"));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("[a-]", "-"));
        assert!(m("x[\\]]", "x]"));
        assert!(m("*[0-9]", "key7"));
        assert!(m("[abc", "b"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("a\\?", "a?"));
        assert!(m("a\\", "a\\"));
    }

    #[test]
    fn no_exponential_backtracking() {
        let text = "a".repeat(5000);
        assert!(!m("*a*a*a*a*a*a*a*a*b", &text));
    }
}
