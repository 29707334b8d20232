//! Dispatch on one node and across nodes linked by an in-memory twin of the cluster.

mod concurrency;
mod failures;
mod remote;
mod support;
mod x3m;
