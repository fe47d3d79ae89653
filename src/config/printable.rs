//! What "printable" means, in one place (SPEC §3.7, §6).
//!
//! Names (pool ids, endpoint names, balancer names, monitor ids) reach the access log, the status
//! page, metrics labels and error messages; text the importer copies from an export lands in YAML
//! comments. In both, a character that breaks a line or draws nothing can forge what follows it:
//! YAML ends a comment at U+0085, U+2028 and U+2029 as well as at `\n` and `\r`, and a terminal
//! obeys escape sequences. So names must not hold such characters, and text that is shown but
//! must not be read as anything else goes through [`escape`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for a character that is not printable text: a control character (C0, DEL, C1, tab
/// included), a line or paragraph separator, the byte order mark, the two non-characters YAML
/// refuses (U+FFFE, U+FFFF), or an invisible format character that reorders or hides text
/// (zero-width spaces and joiners, bidirectional embeddings, overrides and isolates).
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{feff}'
                | '\u{fffe}'
                | '\u{ffff}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
        )
}

/// `s` with every unprintable character written as `\n`, `\r`, `\t` or `\u{XXXX}`: the result
/// is one line of printable text in a YAML comment, a log line or a terminal, whatever `s` held.
/// Borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unprintable) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unprintable(c) => {
                let _ = write!(out, "\\u{{{:04X}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Why `name` cannot name a pool, endpoint, load balancer or monitor, or `None` when it can: a
/// name is not empty and every character of it is printable (spaces are: `b c` is a name).
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    let c = name.chars().find(|&c| is_unprintable(c))?;
    let kind = if c.is_control() {
        "a control character"
    } else if matches!(c, '\u{2028}' | '\u{2029}') {
        "a line break"
    } else {
        "an invisible character"
    };
    Some(format!(
        "contains U+{:04X} ({kind}): a name must be printable",
        u32::from(c)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_yaml_line_break_and_control_character_is_escaped() {
        for c in [
            '\n', '\r', '\u{85}', '\u{2028}', '\u{2029}', '\0', '\u{1b}', '\u{7f}', '\u{9b}',
        ] {
            let s = format!("a{c}b");
            let e = escape(&s);
            assert!(e.chars().all(|c| !is_unprintable(c)), "{c:?} -> {e:?}");
            assert!(e.starts_with("a\\") && e.ends_with('b'), "{e:?}");
        }
        assert_eq!(escape("a\u{2028}b\n"), "a\\u{2028}b\\n");
        assert_eq!(escape("a\u{85}"), "a\\u{0085}");
    }

    #[test]
    fn printable_text_is_borrowed_unchanged() {
        for s in [
            "web primary",
            "café – 東京",
            "emoji 🦀",
            "\"quoted\" \\ back",
            "",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn names_are_printable_and_not_empty() {
        for ok in ["web", "b c", "192.0.2.10", "café", "shop.example.com"] {
            assert_eq!(name_problem(ok), None, "{ok:?}");
        }
        assert_eq!(name_problem("").as_deref(), Some("must not be empty"));
        let p = name_problem("a\u{1}b").unwrap();
        assert!(p.contains("U+0001 (a control character)"), "{p}");
        let p = name_problem("a\u{2028}b").unwrap();
        assert!(p.contains("U+2028 (a line break)"), "{p}");
        let p = name_problem("evil\u{202e}gnp").unwrap();
        assert!(p.contains("U+202E (an invisible character)"), "{p}");
        for c in ['\t', '\u{7f}', '\u{85}', '\u{feff}'] {
            assert!(name_problem(&format!("a{c}")).is_some(), "{c:?}");
        }
    }
}
