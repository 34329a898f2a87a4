//! Frame codecs: zero-copy views over `&[u8]` and builders into `&mut [u8]`.
