//! Schema migrations, applied in order on open; `PRAGMA user_version` records how far a database got.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: user map, jobs, outbox.
    "CREATE TABLE user_map (
        ucloud_user TEXT PRIMARY KEY,
        unix_user   TEXT NOT NULL,
        uid         INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
     );
     CREATE INDEX user_map_uid ON user_map (uid);
     CREATE TABLE jobs (
        ucloud_id        TEXT PRIMARY KEY,
        ucloud_user      TEXT NOT NULL,
        uid              INTEGER NOT NULL,
        slurm_id         INTEGER UNIQUE,
        phase            TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        ended_at         INTEGER
     );
     CREATE INDEX jobs_active ON jobs (ended_at, slurm_id);
     CREATE TABLE outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id       TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        delivered_at INTEGER,
        dead_reason  TEXT
     );
     CREATE INDEX outbox_pending ON outbox (delivered_at, dead_reason, seq);",
    // 2: connections: where a mapping came from, when it expires; one-time connect tickets (hashed).
    "ALTER TABLE user_map ADD COLUMN source TEXT NOT NULL DEFAULT 'admin';
     ALTER TABLE user_map ADD COLUMN expires_at INTEGER;
     CREATE TABLE tickets (
        hash         TEXT PRIMARY KEY,
        ucloud_user  TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        redeemed_at  INTEGER,
        redeemed_uid INTEGER
     );
     CREATE INDEX tickets_user ON tickets (ucloud_user);",
    // 3: what a job was given at submission (for end messages) and its time limit (raised by extend).
    "ALTER TABLE jobs ADD COLUMN memory_mb INTEGER;
     ALTER TABLE jobs ADD COLUMN time_limit_minutes INTEGER;",
];

pub fn apply(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {version} is newer than this ucim ({}); refusing to touch it",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
