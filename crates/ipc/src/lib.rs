//! Server <-> instance messages over a unix socket, with the peer's uid from SO_PEERCRED.
