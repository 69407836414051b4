//! Debian-packaged kernel sources beyond the one installed: `linux-source-X.Y`
//! packages fetched with apt through a private sources list and state
//! directory (the host's apt configuration is left untouched), checked, and
//! their tarball kept in the cache.
