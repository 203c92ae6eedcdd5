// SPDX-License-Identifier: GPL-2.0

//! Taking back, in a callback, the reference that was handed to it with the object.
//!
//! Both modules queue kernel callbacks (a task_work's `callback_head`) embedded in a reference
//! counted object: the queueing gives up one reference (`Arc::into_raw`) and the callback, which
//! gets only a pointer to the embedded field, takes it back. `arc_of_field!` is that step, written
//! once: `container_of!` from the field to its object, then `Arc::from_raw`.

/// `arc_of_field!(ptr, Type, field)`: the `Arc<Type>` whose `field` (an `Opaque<bindings::X>`)
/// `ptr` (a `*mut bindings::X`) points to, taking over one reference.
///
/// Expands to an unsafe operation; the caller's `unsafe` block must uphold: `ptr` points to the
/// `field` of a `Type` that lives inside a `kernel::sync::Arc`, and the caller owns one
/// reference to it that was given up with `Arc::into_raw` (so the result is dropped once).
macro_rules! arc_of_field {
    ($ptr:expr, $type:ty, $field:ident) => {
        ::kernel::sync::Arc::<$type>::from_raw(
            ::kernel::container_of!($ptr.cast::<::kernel::types::Opaque<_>>(), $type, $field)
                .cast_const(),
        )
    };
}

pub(crate) use arc_of_field;
