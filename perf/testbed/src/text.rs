//! Text helpers for the reports and errors the bed prints.

/// The last `n` bytes of `s` (fewer, to start on a character boundary): the
/// end of a log, where a failure usually shows.
pub fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
