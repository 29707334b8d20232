//! The warehouse's HTTP API against a server started in-process on `127.0.0.1:0`, in each mode
//! on each store (memory; SQLite; PostgreSQL in the persisted modes, on a throwaway server
//! unless `SWITCHYARD_TEST_DATABASE_URL` names one): the seed's scenarios, idempotent retries,
//! concurrent decrements that must never take a quantity below zero, and in mode
//! `persisted-async` a product list that converges, also across a projector process killed
//! with SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

mod api;
mod binary;
mod decrements;
mod projector;
mod restart;
mod support;
