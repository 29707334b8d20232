//! The PostgreSQL alarm store against the public alarm-store conformance suite, each check in a
//! fresh schema.

use crate::support;

switchyard_scheduler::alarm_store_conformance!(async { support::store().await });
