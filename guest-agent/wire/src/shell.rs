//! Commands written the way a shell needs them, so a logged action can be pasted.

/// `words` joined by spaces, each quoted only if a shell would need it.
pub fn quote_words<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|word| quote(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_words_that_need_it_are_quoted() {
        assert_eq!(
            quote_words(&["once", "--message", "Hello from userspace!", "it's", ""]),
            r#"once --message 'Hello from userspace!' 'it'\''s' ''"#
        );
        assert_eq!(
            quote_words(&["-machine", "q35,accel=tcg", "/a/b.c"]),
            "-machine q35,accel=tcg /a/b.c"
        );
    }
}
