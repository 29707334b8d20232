//! The text a caught panic carried, for the errors that report it.

/// The message of a panic caught with `catch_unwind` (its `&str` or `String` payload), or
/// "no message" for any other payload.
///
/// ```
/// let caught = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
/// assert_eq!(switchyard_messaging::panic_text(&*caught), "boom 1");
/// ```
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}
