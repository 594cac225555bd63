//! The server's database: migrations, user map, jobs, the durable outbox. SQLite.
