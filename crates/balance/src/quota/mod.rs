//! The bandwidth allocator.
