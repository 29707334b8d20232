//! The expected-version rule, the memory store's, shared by appends, deletes and state saves.

use switchyard_aggregates::store::{AppendError, ExpectedVersion};

/// `expected` as the statements take it: a kind (0 any, 1 no stream, 2 exactly) and a version.
pub(crate) fn params(expected: ExpectedVersion) -> (i32, i64) {
    match expected {
        ExpectedVersion::Any => (0, -1),
        ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => (1, -1),
        ExpectedVersion::Exactly(version) => (2, version),
    }
}

/// Whether a stream at `actual` (`None`: no stream) is at `expected`; the memory store's rule.
pub(crate) fn satisfies(expected: ExpectedVersion, actual: Option<i64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => actual.is_none(),
        ExpectedVersion::Exactly(version) => actual == Some(version),
    }
}

/// The conflict of a write that expected `expected` and found the stream at `actual`.
pub(crate) fn conflict(
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<i64>,
) -> AppendError {
    AppendError::Conflict {
        stream: stream.to_owned(),
        expected,
        actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_versions_follow_the_memory_store() {
        assert!(satisfies(ExpectedVersion::Any, None));
        assert!(satisfies(ExpectedVersion::Exactly(-1), None));
        assert!(!satisfies(ExpectedVersion::Exactly(-1), Some(0)));
        assert!(!satisfies(ExpectedVersion::NoStream, Some(3)));
        assert!(satisfies(ExpectedVersion::Exactly(3), Some(3)));
        assert!(!satisfies(ExpectedVersion::Exactly(3), None));
        assert_eq!(params(ExpectedVersion::Exactly(-1)), (1, -1));
        assert_eq!(params(ExpectedVersion::Exactly(9)), (2, 9));
    }
}
