//! ucim's TOML configuration: parsing and validation with errors that name file, key and problem.
