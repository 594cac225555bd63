//! Provider -> Core HTTP client: refresh-token exchange, cached access tokens, control calls.
