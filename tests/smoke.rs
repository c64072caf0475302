//! Placeholder so the root package has a target until the end-to-end suites land.
