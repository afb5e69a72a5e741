//! Tests of the `[server]` and `[[routes]]` rules.
