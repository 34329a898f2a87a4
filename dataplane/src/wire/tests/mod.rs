//! Cross-layer tests: builders ↔ parse_frame, kernel captures, robustness.
