//! postgres stores for Switchyard (work in progress).
#![deny(missing_docs)]
