//! Cross-module tests of the forwarding pipeline.
