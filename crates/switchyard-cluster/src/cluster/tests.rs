//! Tests of the cluster's logic over the in-memory transport, on paused time.
