//! User mappings and connect tickets.

use rusqlite::{params, OptionalExtension};

use crate::{exec, now_ms, row, Result, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct UserMapping {
    pub ucloud_user: String,
    pub unix_user: String,
    pub uid: u32,
    pub created_at: i64,
    /// How it was made: `admin`, `ticket`, `hook` or `many-to-one`.
    pub source: String,
    pub expires_at: Option<i64>,
}

impl UserMapping {
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TicketRow {
    pub hash: String,
    pub ucloud_user: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub redeemed_at: Option<i64>,
    pub redeemed_uid: Option<u32>,
}

/// What redeeming a ticket did. Only `Mapped` changed anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Redemption {
    Mapped { ucloud_user: String, previous: Option<UserMapping> },
    Unknown,
    AlreadyUsed,
    Expired,
    /// One-to-one: the account already stands for another UCloud user.
    AccountTaken { by: String },
}

const USER_COLUMNS: &str = "ucloud_user, unix_user, uid, created_at, source, expires_at";
const TICKET_COLUMNS: &str = "hash, ucloud_user, created_at, expires_at, redeemed_at, redeemed_uid";

impl Store {
    /// Maps (or re-maps) `ucloud_user`.
    pub fn map_user(&self, ucloud_user: &str, unix_user: &str, uid: u32) -> Result<()> {
        self.map_user_from(ucloud_user, unix_user, uid, "admin", None)
    }

    pub fn map_user_from(
        &self,
        ucloud_user: &str,
        unix_user: &str,
        uid: u32,
        source: &str,
        expires_at: Option<i64>,
    ) -> Result<()> {
        upsert_mapping(&*self.durable()?, ucloud_user, unix_user, uid, source, expires_at)
    }

    pub fn unmap_user(&self, ucloud_user: &str) -> Result<bool> {
        Ok(self.durable()?.execute("DELETE FROM user_map WHERE ucloud_user = ?1", [ucloud_user])? > 0)
    }

    pub fn user(&self, ucloud_user: &str) -> Result<Option<UserMapping>> {
        row(&self.conn(), &format!("SELECT {USER_COLUMNS} FROM user_map WHERE ucloud_user = ?1"), [ucloud_user], user_from_row)
            .optional()
    }

    pub fn users_by_uid(&self, uid: u32) -> Result<Vec<UserMapping>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM user_map WHERE uid = ?1 ORDER BY ucloud_user"))?;
        let rows = stmt.query_map([uid], user_from_row)?;
        rows.collect()
    }

    pub fn users(&self) -> Result<Vec<UserMapping>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM user_map ORDER BY ucloud_user"))?;
        let rows = stmt.query_map([], user_from_row)?;
        rows.collect()
    }

    /// Stores a new ticket for `ucloud_user`; older unredeemed tickets of that user stop working.
    pub fn create_ticket(&self, hash: &str, ucloud_user: &str, expires_at: i64) -> Result<()> {
        let mut conn = self.durable()?;
        let tx = conn.transaction()?;
        exec(&tx, "DELETE FROM tickets WHERE ucloud_user = ?1 AND redeemed_at IS NULL", [ucloud_user])?;
        exec(
            &tx,
            "INSERT INTO tickets (hash, ucloud_user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, ucloud_user, now_ms(), expires_at],
        )?;
        tx.commit()
    }

    pub fn ticket(&self, hash: &str) -> Result<Option<TicketRow>> {
        row(&self.conn(), &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE hash = ?1"), [hash], ticket_from_row)
            .optional()
    }

    /// Tickets not yet redeemed nor expired, for `ucim admin connections`.
    pub fn open_tickets(&self) -> Result<Vec<TicketRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE redeemed_at IS NULL AND expires_at > ?1 ORDER BY created_at"
        ))?;
        let rows = stmt.query_map([now_ms()], ticket_from_row)?;
        rows.collect()
    }

    /// Redeems ticket `hash` for the account `unix_user`/`uid` in one transaction: the ticket is used and
    /// the mapping made together, or neither. With `one_to_one`, an account that already stands for another
    /// UCloud user is refused.
    pub fn redeem_ticket(
        &self,
        hash: &str,
        unix_user: &str,
        uid: u32,
        one_to_one: bool,
        mapping_expires_at: Option<i64>,
    ) -> Result<Redemption> {
        let now = now_ms();
        let mut conn = self.durable()?;
        let tx = conn.transaction()?;
        let Some(ticket) = row(&tx, &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE hash = ?1"), [hash], ticket_from_row)
            .optional()?
        else {
            return Ok(Redemption::Unknown);
        };
        if ticket.redeemed_at.is_some() {
            return Ok(Redemption::AlreadyUsed);
        }
        if ticket.expires_at <= now {
            return Ok(Redemption::Expired);
        }
        if one_to_one {
            let other: Option<String> = row(
                &tx,
                "SELECT ucloud_user FROM user_map WHERE uid = ?1 AND ucloud_user != ?2 LIMIT 1",
                params![uid, ticket.ucloud_user],
                |r| r.get(0),
            )
            .optional()?;
            if let Some(by) = other {
                return Ok(Redemption::AccountTaken { by });
            }
        }
        let previous = row(
            &tx,
            &format!("SELECT {USER_COLUMNS} FROM user_map WHERE ucloud_user = ?1"),
            [&ticket.ucloud_user],
            user_from_row,
        )
        .optional()?;
        exec(&tx, "UPDATE tickets SET redeemed_at = ?1, redeemed_uid = ?2 WHERE hash = ?3", params![now, uid, hash])?;
        upsert_mapping(&tx, &ticket.ucloud_user, unix_user, uid, "ticket", mapping_expires_at)?;
        tx.commit()?;
        Ok(Redemption::Mapped { ucloud_user: ticket.ucloud_user, previous })
    }

    /// Undoes a redemption the Core did not accept: the ticket works again and the mapping is what it was.
    pub fn revert_redemption(&self, hash: &str, ucloud_user: &str, previous: Option<&UserMapping>) -> Result<()> {
        let mut conn = self.durable()?;
        let tx = conn.transaction()?;
        exec(&tx, "UPDATE tickets SET redeemed_at = NULL, redeemed_uid = NULL WHERE hash = ?1", [hash])?;
        restore(&tx, ucloud_user, previous)?;
        tx.commit()
    }

    /// Puts `ucloud_user`'s mapping back to `previous` (none: unmapped).
    pub fn restore_mapping(&self, ucloud_user: &str, previous: Option<&UserMapping>) -> Result<()> {
        let mut conn = self.durable()?;
        let tx = conn.transaction()?;
        restore(&tx, ucloud_user, previous)?;
        tx.commit()
    }
}

fn restore(tx: &rusqlite::Transaction<'_>, ucloud_user: &str, previous: Option<&UserMapping>) -> Result<()> {
    exec(tx, "DELETE FROM user_map WHERE ucloud_user = ?1", [ucloud_user])?;
    if let Some(p) = previous {
        exec(
            tx,
            &format!("INSERT INTO user_map ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![p.ucloud_user, p.unix_user, p.uid, p.created_at, p.source, p.expires_at],
        )?;
    }
    Ok(())
}

fn upsert_mapping(
    conn: &rusqlite::Connection,
    ucloud_user: &str,
    unix_user: &str,
    uid: u32,
    source: &str,
    expires_at: Option<i64>,
) -> Result<()> {
    exec(
        conn,
        "INSERT INTO user_map (ucloud_user, unix_user, uid, created_at, source, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(ucloud_user) DO UPDATE SET unix_user = excluded.unix_user, uid = excluded.uid,
             created_at = excluded.created_at, source = excluded.source, expires_at = excluded.expires_at",
        params![ucloud_user, unix_user, uid, now_ms(), source, expires_at],
    )?;
    Ok(())
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserMapping> {
    Ok(UserMapping {
        ucloud_user: r.get(0)?,
        unix_user: r.get(1)?,
        uid: r.get(2)?,
        created_at: r.get(3)?,
        source: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

fn ticket_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TicketRow> {
    Ok(TicketRow {
        hash: r.get(0)?,
        ucloud_user: r.get(1)?,
        created_at: r.get(2)?,
        expires_at: r.get(3)?,
        redeemed_at: r.get(4)?,
        redeemed_uid: r.get(5)?,
    })
}
