//! A stand-in UCloud Core for tests, benchmarks and the demo: signs real RS256 tokens, speaks the wire format.
