//! Not an API: the entry points of the fuzz targets in the repository's `fuzz/` package, which
//! need the crate's private row decoder. Hidden from the docs, outside semver, and free to
//! change with any release; nothing else may call them.
//!
//! A row from the server is a list of columns, each NULL or the bytes of PostgreSQL's binary
//! format; the decoder converts each with `FromSql` (as `tokio_postgres::Row::try_get` does)
//! and builds recorded events from them. [`decode_event_rows`] runs that on columns the fuzzer
//! writes.

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use switchyard_aggregates::store::StoreError;
use tokio_postgres::types::{FromSql, ToSql, Type};

use crate::rows::{Columns, Decoder};

/// The types of the event columns of `read_stream.sql` and `read_all.sql`, in order.
const EVENT_COLUMNS: [Type; 11] = [
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
];

/// The length that marks a NULL column in the fuzz input.
const NULL: u32 = u32::MAX;

/// One row of raw columns, converted on demand as a driver's row is.
struct RawRow<'a> {
    types: &'a [Type],
    values: Vec<Option<&'a [u8]>>,
}

impl Columns for RawRow<'_> {
    fn column<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T, StoreError> {
        let ty = self
            .types
            .get(index)
            .ok_or_else(|| StoreError::backend(format!("no column {index}")))?;
        if !T::accepts(ty) {
            return Err(StoreError::backend(format!("column {index} is not a {ty}")));
        }
        let raw = self.values.get(index).copied().flatten();
        T::from_sql_nullable(ty, raw).map_err(StoreError::backend)
    }
}

/// Decodes `input` as rows of event columns, in order with one decoder (which shares equal
/// strings between consecutive rows), as a read of a stream does; stops at the first error.
///
/// The input is a sequence of columns, each a 4-byte little-endian length then that many
/// bytes (`0xFFFF_FFFF`: NULL, no bytes), eleven to a row; a short tail ends the input.
/// Returns how many events were decoded.
pub fn decode_event_rows(input: &[u8]) -> Result<usize, String> {
    let columns = split_columns(input);
    let mut decoder = Decoder::at(0);
    let mut decoded = 0;
    for values in columns.chunks(EVENT_COLUMNS.len()) {
        let row = RawRow {
            types: &EVENT_COLUMNS,
            values: values.to_vec(),
        };
        decoder.event(&row).map_err(|error| with_sources(&error))?;
        decoded += 1;
    }
    Ok(decoded)
}

/// `error` and its sources, `: `-separated.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn split_columns(mut input: &[u8]) -> Vec<Option<&[u8]>> {
    let mut columns = Vec::new();
    while let Some((len, rest)) = input.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len);
        if len == NULL {
            columns.push(None);
            input = rest;
            continue;
        }
        let Some((value, rest)) = rest.split_at_checked(len as usize) else {
            break;
        };
        columns.push(Some(value));
        input = rest;
    }
    columns
}

/// Seed inputs for [`decode_event_rows`], written from real values by the drivers' own
/// `ToSql`: `(name, bytes)`.
pub fn seed_event_rows() -> Vec<(&'static str, Vec<u8>)> {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
    let row = |stream: &str, version: i64, data: &[u8], user: &str| -> Vec<Option<Vec<u8>>> {
        let values: [&(dyn ToSql + Sync); 11] = [
            &stream,
            &version,
            &(version + 100),
            &"Deposited",
            &1_i64,
            &data,
            &"message-1",
            &"correlation-1",
            &"causation-1",
            &user,
            &at,
        ];
        values
            .iter()
            .zip(&EVENT_COLUMNS)
            .map(|(value, ty)| {
                let mut out = BytesMut::new();
                match value.to_sql_checked(ty, &mut out) {
                    Ok(tokio_postgres::types::IsNull::No) => Some(out.to_vec()),
                    _ => None,
                }
            })
            .collect()
    };
    let one = row("account-1", 1, &[1, 0, 250], "{}");
    let mut two = one.clone();
    two.extend(row("account-1", 2, &[1, 7], r#"{"tenant":"acme"}"#));
    let mut null_user = row("account-2", 1, &[], "{}");
    null_user[9] = None;
    [
        ("one_event", one),
        ("two_events", two),
        ("null_user", null_user),
    ]
    .into_iter()
    .map(|(name, columns)| (name, join_columns(&columns)))
    .collect()
}

fn join_columns(columns: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    for column in columns {
        match column {
            Some(bytes) => {
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            None => out.extend_from_slice(&NULL.to_le_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_seed_rows_decode_and_a_null_column_is_an_error() {
        let seeds = seed_event_rows();
        assert_eq!(decode_event_rows(&seeds[0].1), Ok(1));
        assert_eq!(decode_event_rows(&seeds[1].1), Ok(2));
        let error = decode_event_rows(&seeds[2].1).unwrap_err();
        assert!(error.contains("NULL"), "{error}");
    }
}
