//! JWT verification and issuing (RS256 only), key loading and generation.
