//! The progress bar the commands draw on a terminal: `[########------------]  40% 400/1000`.

const WIDTH: u64 = 20;

/// `done` of `expected` (which grows to `done` if it was an estimate).
pub(crate) fn bar(done: u64, expected: u64) -> String {
    let expected = expected.max(done);
    let whole = expected.max(1);
    let filled = (done * WIDTH / whole) as usize;
    format!(
        "[{}{}] {:>3}% {done}/{expected}",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
        done * 100 / whole,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bar() {
        assert_eq!(
            super::bar(400, 1000),
            "[########------------]  40% 400/1000"
        );
        assert_eq!(super::bar(3, 2), "[####################] 100% 3/3");
        assert_eq!(super::bar(0, 0), "[--------------------]   0% 0/0");
    }
}
