//! Not an API: the entry points of the fuzz targets in the repository's `fuzz/` package, which
//! need the crate's private row decoder. Hidden from the docs, outside semver, and free to
//! change with any release; nothing else may call them.
//!
//! SQLite types values, not columns: a damaged or foreign file can hold any type in any
//! column, and text that is not UTF-8. [`EventRowDecoder`] hands the event reader real SQLite
//! rows whose values the fuzzer chooses.

use rusqlite::Connection;
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

use crate::events::EventRows;

/// How many columns an event row has (see `sql/read_all.sql`).
const EVENT_COLUMNS: usize = 11;

/// Decodes rows of values chosen by the fuzzer with the stores' event reader.
pub struct EventRowDecoder {
    connection: Connection,
}

/// One SQLite value of the fuzz input.
#[derive(Clone, Copy)]
enum Column<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl ToSql for Column<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Self::Null => ValueRef::Null,
            Self::Integer(value) => ValueRef::Integer(value),
            Self::Real(value) => ValueRef::Real(value),
            Self::Text(bytes) => ValueRef::Text(bytes),
            Self::Blob(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

impl EventRowDecoder {
    /// A decoder over an in-memory database (it stores nothing: each row is a `SELECT` of its
    /// values).
    ///
    /// # Errors
    ///
    /// When SQLite cannot open an in-memory database.
    pub fn new() -> Result<Self, String> {
        let connection = Connection::open_in_memory().map_err(|error| error.to_string())?;
        Ok(Self { connection })
    }

    /// Decodes `input` as rows of event values, in order with one reader (which shares equal
    /// strings between consecutive rows), as a read of all events does; stops at the first
    /// error.
    ///
    /// The input is a sequence of values, each a tag byte then its value: 0 NULL; 1 an
    /// integer and 2 a real, 8 bytes little-endian; 3 text (any bytes) and 4 a blob, a 4-byte
    /// little-endian length then the bytes. Other tags are NULL. Eleven values make a row; a
    /// short tail ends the input. Returns how many events were decoded.
    ///
    /// # Errors
    ///
    /// The reader's error, as text.
    pub fn decode(&self, input: &[u8]) -> Result<usize, String> {
        let values = split_values(input);
        let mut statement = self
            .connection
            .prepare_cached(include_str!("sql/fuzz_event_row.sql"))
            .map_err(|error| error.to_string())?;
        let mut reader = EventRows::default();
        let mut decoded = 0;
        for row in values.chunks_exact(EVENT_COLUMNS) {
            let params: Vec<&dyn ToSql> = row.iter().map(|value| value as &dyn ToSql).collect();
            let mut rows = statement
                .query(params.as_slice())
                .map_err(|error| error.to_string())?;
            while let Some(row) = rows.next().map_err(|error| error.to_string())? {
                reader.read(row).map_err(|error| error.to_string())?;
                decoded += 1;
            }
        }
        Ok(decoded)
    }
}

fn split_values(mut input: &[u8]) -> Vec<Column<'_>> {
    let mut values = Vec::new();
    while let Some((&tag, rest)) = input.split_first() {
        let (value, rest) = match tag {
            1 | 2 => {
                let Some((bytes, rest)) = rest.split_first_chunk::<8>() else {
                    break;
                };
                if tag == 1 {
                    (Column::Integer(i64::from_le_bytes(*bytes)), rest)
                } else {
                    (Column::Real(f64::from_le_bytes(*bytes)), rest)
                }
            }
            3 | 4 => {
                let Some((len, rest)) = rest.split_first_chunk::<4>() else {
                    break;
                };
                let Some((bytes, rest)) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)
                else {
                    break;
                };
                if tag == 3 {
                    (Column::Text(bytes), rest)
                } else {
                    (Column::Blob(bytes), rest)
                }
            }
            _ => (Column::Null, rest),
        };
        values.push(value);
        input = rest;
    }
    values
}

/// Seed inputs for [`EventRowDecoder::decode`], as the store writes events: `(name, bytes)`.
pub fn seed_event_rows() -> Vec<(&'static str, Vec<u8>)> {
    let row = |stream: &str, version: i64, data: &[u8], user: &str| {
        let values = [
            Column::Text(stream.as_bytes()),
            Column::Integer(version),
            Column::Integer(version + 100),
            Column::Text(b"Deposited"),
            Column::Integer(1),
            Column::Blob(data),
            Column::Text(b"message-1"),
            Column::Text(b"correlation-1"),
            Column::Text(b"causation-1"),
            Column::Text(user.as_bytes()),
            Column::Integer(1_765_000_000_000_000),
        ];
        join_values(&values)
    };
    let one = row("account-1", 1, &[1, 0, 250], "{}");
    let mut two = one.clone();
    two.extend(row("account-1", 2, &[1, 7], r#"{"tenant":"acme"}"#));
    let mut other_stream = one.clone();
    other_stream.extend(row("account-2", 1, &[], "{}"));
    vec![
        ("one_event", one),
        ("two_events", two),
        ("two_streams", other_stream),
    ]
}

fn join_values(values: &[Column<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        match *value {
            Column::Null => out.push(0),
            Column::Integer(value) => {
                out.push(1);
                out.extend_from_slice(&value.to_le_bytes());
            }
            Column::Real(value) => {
                out.push(2);
                out.extend_from_slice(&value.to_le_bytes());
            }
            Column::Text(bytes) | Column::Blob(bytes) => {
                out.push(if matches!(value, Column::Text(_)) {
                    3
                } else {
                    4
                });
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_seed_rows_decode_and_text_that_is_not_utf8_is_an_error() {
        let decoder = EventRowDecoder::new().unwrap();
        let seeds = seed_event_rows();
        assert_eq!(decoder.decode(&seeds[0].1), Ok(1));
        assert_eq!(decoder.decode(&seeds[1].1), Ok(2));
        assert_eq!(decoder.decode(&seeds[2].1), Ok(2));
        let mut bad_stream = seeds[0].1.clone();
        bad_stream[5] = 0xFF;
        let error = decoder.decode(&bad_stream).unwrap_err();
        assert!(error.contains("not UTF-8"), "{error}");
    }
}
