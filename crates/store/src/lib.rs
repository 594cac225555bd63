//! The server's database. SQLite, WAL mode, migrations applied on open.
//!
//! Durability: a commit is in the WAL (safe from a crash of the server) when it returns, and on disk
//! (safe from a power loss) within about a second, when the checkpointer thread syncs the WAL. Commits
//! do not wait for the disk: on a busy host one `fsync` can take hundreds of milliseconds (it flushes
//! the whole file system's journal), and every user call would queue behind it. The few writes a power
//! loss must never undo (user mappings and tickets) go through [`Store::durable`] and are synced before
//! they return.
//!
//! The store knows jobs, user mappings and the outbox, but not what a Slurm phase or a UCloud update looks
//! like: those arrive as opaque text from the server. Every state change of a job and the updates it
//! causes are written in one transaction, so a crash can never record one without the other.

mod migrations;
mod users;

pub use users::{Redemption, TicketRow, UserMapping};

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

pub use rusqlite::Error as DbError;

pub type Result<T> = std::result::Result<T, DbError>;

pub struct Store {
    conn: Mutex<Connection>,
    /// Dropping it stops the checkpointer thread (file-backed stores only).
    _checkpointer: Option<mpsc::Sender<()>>,
}

/// How often the checkpointer syncs the WAL and copies it into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What a job was submitted with, recorded before `sbatch` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobLimits {
    /// Memory per node, MiB.
    pub memory_mb: Option<u64>,
    /// The Slurm time limit in minutes.
    pub time_limit_minutes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub ucloud_id: String,
    pub ucloud_user: String,
    pub uid: u32,
    pub slurm_id: Option<u64>,
    /// Last known phase, as the server serialised it.
    pub phase: String,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// Memory per node the job was submitted with (MiB), if recorded.
    pub memory_mb: Option<u64>,
    /// The job's Slurm time limit in minutes: as submitted, then as extended.
    pub time_limit_minutes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub seq: i64,
    pub job_id: String,
    pub payload: String,
    pub attempts: i64,
}

/// What `insert_job` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New,
    /// The Core retried a create we already accepted.
    Existing(JobRow),
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let mut store = Store::init(Connection::open(path)?)?;
        // The checkpointer does the syncing, on its own connection and thread, so commits never wait for it.
        store.conn().pragma_update(None, "wal_autocheckpoint", 0)?;
        store._checkpointer = Some(spawn_checkpointer(Connection::open(path)?)?);
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: a commit is written to the WAL, not synced (see the module docs).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // Room for every statement the store runs (see `exec`, `row`), so none is parsed twice.
        conn.set_prepared_statement_cache_capacity(64);
        migrations::apply(&mut conn)?;
        Ok(Store { conn: Mutex::new(conn), _checkpointer: None })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back), so go on.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection with every commit synced to disk before it returns (and with it everything
    /// committed earlier): for writes a power loss must not undo.
    fn durable(&self) -> Result<Durable<'_>> {
        let conn = self.conn();
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Durable(conn))
    }

    // ---------------------------------------------------------------- jobs

    /// Records that `uid` is about to submit `ucloud_id`, before `sbatch` runs, so a crash in between
    /// leaves a trace rather than an untracked Slurm job.
    pub fn insert_job(&self, ucloud_id: &str, ucloud_user: &str, uid: u32, phase: &str, limits: JobLimits) -> Result<Inserted> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(existing) = row(&tx, &job_select("WHERE ucloud_id = ?1"), [ucloud_id], job_from_row).optional()? {
            return Ok(Inserted::Existing(existing));
        }
        exec(
            &tx,
            "INSERT INTO jobs (ucloud_id, ucloud_user, uid, phase, created_at, memory_mb, time_limit_minutes) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                ucloud_id,
                ucloud_user,
                uid,
                phase,
                now_ms(),
                limits.memory_mb.map(|m| m as i64),
                limits.time_limit_minutes.map(|m| m as i64)
            ],
        )?;
        tx.commit()?;
        Ok(Inserted::New)
    }

    /// Submission failed: forget the job (only if it never got a Slurm id).
    pub fn delete_unsubmitted_job(&self, ucloud_id: &str) -> Result<bool> {
        Ok(exec(&self.conn(), "DELETE FROM jobs WHERE ucloud_id = ?1 AND slurm_id IS NULL", [ucloud_id])? > 0)
    }

    pub fn job(&self, ucloud_id: &str) -> Result<Option<JobRow>> {
        row(&self.conn(), &job_select("WHERE ucloud_id = ?1"), [ucloud_id], job_from_row).optional()
    }

    /// Jobs with a Slurm id that have not ended: what the monitor watches.
    pub fn active_jobs(&self) -> Result<Vec<JobRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&job_select("WHERE slurm_id IS NOT NULL AND ended_at IS NULL ORDER BY slurm_id"))?;
        let rows = stmt.query_map([], job_from_row)?;
        rows.collect()
    }

    pub fn job_by_slurm_id(&self, slurm_id: u64) -> Result<Option<JobRow>> {
        row(&self.conn(), &job_select("WHERE slurm_id = ?1"), [slurm_id], job_from_row).optional()
    }

    /// Whether `uid` has a job registered but not yet confirmed (its `sbatch` may be running now) since
    /// `since_ms`: a Slurm job of that uid not yet tracked may be that one.
    pub fn has_unconfirmed_job(&self, uid: u32, since_ms: i64) -> Result<bool> {
        row(
            &self.conn(),
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE uid = ?1 AND slurm_id IS NULL AND ended_at IS NULL AND created_at >= ?2)",
            params![uid, since_ms],
            |r| r.get(0),
        )
    }

    pub fn jobs_of_uid(&self, uid: u32) -> Result<Vec<JobRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&job_select("WHERE uid = ?1 ORDER BY created_at"))?;
        let rows = stmt.query_map([uid], job_from_row)?;
        rows.collect()
    }

    /// The job was submitted: store its Slurm id and queue the updates that announce it, atomically.
    pub fn confirm_submission(&self, ucloud_id: &str, slurm_id: u64, updates: &[String]) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = exec(
            &tx,
            "UPDATE jobs SET slurm_id = ?2 WHERE ucloud_id = ?1 AND slurm_id IS NULL",
            params![ucloud_id, slurm_id as i64],
        )?;
        if changed == 1 {
            enqueue(&tx, ucloud_id, updates)?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    /// A phase change seen in Slurm: store the new phase (and the end, if it ended) and queue the updates
    /// for the Core, in one transaction.
    pub fn record_transition(&self, ucloud_id: &str, phase: &str, ended: bool, updates: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        exec(
            &tx,
            "UPDATE jobs SET phase = ?2, ended_at = CASE WHEN ?3 THEN ?4 ELSE ended_at END WHERE ucloud_id = ?1",
            params![ucloud_id, phase, ended, now_ms()],
        )?;
        enqueue(&tx, ucloud_id, updates)?;
        tx.commit()
    }

    /// The time limit was changed in Slurm: store it and queue the updates that tell the Core, atomically.
    pub fn record_time_limit(&self, ucloud_id: &str, minutes: u64, updates: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        exec(&tx, "UPDATE jobs SET time_limit_minutes = ?2 WHERE ucloud_id = ?1", params![ucloud_id, minutes as i64])?;
        enqueue(&tx, ucloud_id, updates)?;
        tx.commit()
    }

    /// Queues `(job id, update)` pairs that change nothing the store tracks (e.g. why queued jobs wait), in
    /// one transaction.
    pub fn queue_updates(&self, items: &[(String, String)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (ucloud_id, payload) in items {
            enqueue(&tx, ucloud_id, std::slice::from_ref(payload))?;
        }
        tx.commit()
    }

    pub fn set_cancel_requested(&self, ucloud_id: &str) -> Result<()> {
        exec(&self.conn(), "UPDATE jobs SET cancel_requested = 1 WHERE ucloud_id = ?1", [ucloud_id])?;
        Ok(())
    }

    // ---------------------------------------------------------------- outbox

    /// Undelivered updates, oldest first.
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, job_id, payload, attempts FROM outbox
             WHERE delivered_at IS NULL AND dead_reason IS NULL ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(OutboxRow { seq: r.get(0)?, job_id: r.get(1)?, payload: r.get(2)?, attempts: r.get(3)? })
        })?;
        rows.collect()
    }

    pub fn outbox_delivered(&self, seqs: &[i64]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        for seq in seqs {
            exec(&tx, "UPDATE outbox SET delivered_at = ?2 WHERE seq = ?1", params![seq, now])?;
        }
        tx.commit()
    }

    pub fn outbox_attempted(&self, seqs: &[i64]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for seq in seqs {
            exec(&tx, "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?1", [seq])?;
        }
        tx.commit()
    }

    /// The Core will never accept updates for this job (it does not know it): park them with a reason.
    pub fn outbox_give_up_job(&self, job_id: &str, reason: &str) -> Result<usize> {
        exec(
            &self.conn(),
            "UPDATE outbox SET dead_reason = ?2 WHERE job_id = ?1 AND delivered_at IS NULL AND dead_reason IS NULL",
            params![job_id, reason],
        )
    }

    pub fn outbox_counts(&self) -> Result<(i64, i64, i64)> {
        row(
            &self.conn(),
            "SELECT COUNT(*) FILTER (WHERE delivered_at IS NULL AND dead_reason IS NULL),
                    COUNT(*) FILTER (WHERE delivered_at IS NOT NULL),
                    COUNT(*) FILTER (WHERE dead_reason IS NOT NULL) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }
}

/// `execute` through the connection's statement cache, so each statement is parsed once.
pub(crate) fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the connection's statement cache.
pub(crate) fn row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

fn enqueue(tx: &rusqlite::Transaction<'_>, job_id: &str, updates: &[String]) -> Result<()> {
    let now = now_ms();
    for payload in updates {
        exec(
            tx,
            "INSERT INTO outbox (job_id, payload, created_at) VALUES (?1, ?2, ?3)",
            params![job_id, payload, now],
        )?;
    }
    Ok(())
}

fn job_select(tail: &str) -> String {
    format!(
        "SELECT ucloud_id, ucloud_user, uid, slurm_id, phase, cancel_requested, created_at, ended_at, memory_mb,
                time_limit_minutes FROM jobs {tail}"
    )
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        ucloud_id: r.get(0)?,
        ucloud_user: r.get(1)?,
        uid: r.get(2)?,
        slurm_id: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
        phase: r.get(4)?,
        cancel_requested: r.get(5)?,
        created_at: r.get(6)?,
        ended_at: r.get(7)?,
        memory_mb: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        time_limit_minutes: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
    })
}

#[cfg(test)]
mod tests;

/// The store's connection in FULL sync mode; back to NORMAL when dropped.
struct Durable<'a>(MutexGuard<'a, Connection>);

impl Deref for Durable<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl DerefMut for Durable<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0
    }
}

impl Drop for Durable<'_> {
    fn drop(&mut self) {
        let _ = self.0.pragma_update(None, "synchronous", "NORMAL");
    }
}

/// Syncs the WAL and copies it into the database every [`CHECKPOINT_EVERY`], until the returned sender
/// is dropped. PASSIVE: it never blocks the store's writers (they append to the WAL meanwhile).
fn spawn_checkpointer(conn: Connection) -> Result<mpsc::Sender<()>> {
    conn.busy_timeout(Duration::from_secs(5))?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!("database checkpoint failed (retried in a second): {e}");
                }
            }
        })
        .map_err(|e| {
            let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR);
            DbError::SqliteFailure(code, Some(format!("cannot start the checkpointer thread: {e}")))
        })?;
    Ok(stop)
}
