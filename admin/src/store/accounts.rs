//! Accounts, web sessions and care-team nurses (migration 0030), written once
//! over the platform's [`Conn`] for both engines.

use chrono::{DateTime, Utc};
use vitalwatch_platform::store::StoreError;
use vitalwatch_platform::store::db::{Conn, Row};
use vitalwatch_platform::{args, sql};

use crate::account::{Account, AccountRole};

/// An account row with its sign-in state (the password hash stays in the store layer and the service).
#[derive(Debug, Clone)]
pub struct AccountRow {
    /// The account.
    pub account: Account,
    /// Argon2id PHC string, if the account has a local password.
    pub password_hash: Option<String>,
    /// Consecutive failed sign-ins.
    pub failed_logins: i64,
    /// Locked until then after too many failures.
    pub locked_until: Option<DateTime<Utc>>,
}

/// Maps the 12 account columns starting at `o`.
fn account_at(r: &Row, o: usize) -> Result<AccountRow, StoreError> {
    let role: String = r.get(o + 3)?;
    let disabled_at: Option<DateTime<Utc>> = r.get(o + 8)?;
    Ok(AccountRow {
        account: Account {
            id: r.get(o)?,
            display_name: r.get(o + 1)?,
            email: r.get(o + 2)?,
            role: AccountRole::parse(&role).map_err(|e| StoreError::Permanent(e.to_string()))?,
            physician_id: r.get(o + 4)?,
            language: r.get(o + 5)?,
            time_zone: r.get(o + 6)?,
            oidc_subject: r.get(o + 7)?,
            disabled: disabled_at.is_some(),
        },
        password_hash: r.get(o + 9)?,
        failed_logins: r.get(o + 10)?,
        locked_until: r.get(o + 11)?,
    })
}

/// Inserts an account; `false` when the id is taken.
pub async fn insert(
    c: &mut Conn,
    a: &Account,
    password_hash: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = c
        .execute(
            &sql!("account_insert"),
            &args![
                &a.id,
                &a.display_name,
                a.email.clone(),
                a.role.as_str(),
                a.physician_id.clone(),
                &a.language,
                &a.time_zone,
                password_hash.map(str::to_owned),
                a.oidc_subject.clone(),
                now
            ],
        )
        .await?;
    Ok(n == 1)
}

/// One account by id.
pub async fn by_id(c: &mut Conn, id: &str) -> Result<Option<AccountRow>, StoreError> {
    c.query_opt(&sql!("account_by_id"), &args![id]).await?.map(|r| account_at(&r, 0)).transpose()
}

/// The account bound to an OpenID Connect subject.
pub async fn by_subject(c: &mut Conn, sub: &str) -> Result<Option<AccountRow>, StoreError> {
    c.query_opt(&sql!("account_by_subject"), &args![sub]).await?.map(|r| account_at(&r, 0)).transpose()
}

/// Enabled accounts with this e-mail address and no subject bound yet (at most 2: more than one is ambiguous).
pub async fn by_email_unbound(c: &mut Conn, email: &str) -> Result<Vec<AccountRow>, StoreError> {
    c.query(&sql!("account_by_email_unbound"), &args![email]).await?.iter().map(|r| account_at(r, 0)).collect()
}

/// Every account, by id.
pub async fn list(c: &mut Conn) -> Result<Vec<AccountRow>, StoreError> {
    c.query(&sql!("account_list"), &[]).await?.iter().map(|r| account_at(r, 0)).collect()
}

/// Binds an OpenID Connect subject to an account that has none.
pub async fn bind_subject(c: &mut Conn, id: &str, sub: &str) -> Result<bool, StoreError> {
    Ok(c.execute(&sql!("account_bind_subject"), &args![id, sub]).await? == 1)
}

/// Sets language and time zone.
pub async fn set_prefs(c: &mut Conn, id: &str, language: &str, tz: &str) -> Result<bool, StoreError> {
    Ok(c.execute(&sql!("account_set_prefs"), &args![id, language, tz]).await? == 1)
}

/// Sets the password hash (and clears the failure count and lock).
pub async fn set_password(c: &mut Conn, id: &str, hash: &str) -> Result<bool, StoreError> {
    Ok(c.execute(&sql!("account_set_password"), &args![id, hash]).await? == 1)
}

/// Disables (`Some(at)`) or re-enables (`None`) an account.
pub async fn set_disabled(c: &mut Conn, id: &str, at: Option<DateTime<Utc>>) -> Result<bool, StoreError> {
    Ok(c.execute(&sql!("account_set_disabled"), &args![id, at]).await? == 1)
}

/// Counts a failed sign-in; the `max`-th locks the account until `lock_until`.
pub async fn login_failed(c: &mut Conn, id: &str, max: u32, lock_until: DateTime<Utc>) -> Result<(), StoreError> {
    c.execute(&sql!("account_login_failed"), &args![id, i64::from(max), lock_until]).await.map(drop)
}

/// Clears the failure count after a successful sign-in.
pub async fn login_ok(c: &mut Conn, id: &str) -> Result<(), StoreError> {
    c.execute(&sql!("account_login_ok"), &args![id]).await.map(drop)
}

/// A stored session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// The CSRF token of the session.
    pub csrf: String,
    /// Last request seen.
    pub last_seen_at: DateTime<Utc>,
    /// Absolute end.
    pub expires_at: DateTime<Utc>,
    /// The signed-in account.
    pub account: AccountRow,
}

/// Stores a new session (by the hash of its secret).
pub async fn insert_session(
    c: &mut Conn,
    hash: &str,
    user: &str,
    csrf: &str,
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
    origin: &str,
) -> Result<(), StoreError> {
    c.execute(&sql!("session_insert"), &args![hash, user, csrf, now, expires, origin]).await.map(drop)
}

/// A session by the hash of its secret.
pub async fn session(c: &mut Conn, hash: &str) -> Result<Option<SessionRow>, StoreError> {
    let Some(r) = c.query_opt(&sql!("session_get"), &args![hash]).await? else { return Ok(None) };
    Ok(Some(SessionRow {
        csrf: r.get(0)?,
        last_seen_at: r.get(1)?,
        expires_at: r.get(2)?,
        account: account_at(&r, 3)?,
    }))
}

/// Records activity on a session.
pub async fn touch_session(c: &mut Conn, hash: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    c.execute(&sql!("session_touch"), &args![hash, now]).await.map(drop)
}

/// Ends a session.
pub async fn delete_session(c: &mut Conn, hash: &str) -> Result<bool, StoreError> {
    Ok(c.execute(&sql!("session_delete"), &args![hash]).await? == 1)
}

/// Ends every session of an account.
pub async fn delete_sessions_of(c: &mut Conn, user: &str) -> Result<u64, StoreError> {
    c.execute(&sql!("session_delete_user"), &args![user]).await
}

/// Removes sessions past their end or idle since `idle_before`.
pub async fn purge_sessions(c: &mut Conn, now: DateTime<Utc>, idle_before: DateTime<Utc>) -> Result<u64, StoreError> {
    c.execute(&sql!("session_purge"), &args![now, idle_before]).await
}

/// The patients whose care team lists `nurse`.
pub async fn nurse_patients(c: &mut Conn, nurse: &str) -> Result<Vec<String>, StoreError> {
    c.query(&sql!("nurse_patients"), &args![nurse]).await?.iter().map(|r| r.get(0)).collect()
}

/// The nurses of a patient's care team.
pub async fn care_team_nurses(c: &mut Conn, patient: &str) -> Result<Vec<String>, StoreError> {
    c.query(&sql!("care_team_nurses"), &args![patient]).await?.iter().map(|r| r.get(0)).collect()
}

/// Replaces the nurses of a patient's care team.
pub async fn set_care_team_nurses(c: &mut Conn, patient: &str, nurses: &[String]) -> Result<(), StoreError> {
    c.execute(&sql!("care_team_nurses_clear"), &args![patient]).await?;
    for n in nurses {
        c.execute(&sql!("care_team_nurse_add"), &args![patient, n]).await?;
    }
    Ok(())
}

/// An OpenID Connect sign-in in progress.
#[derive(Debug, Clone)]
pub struct OidcLoginRow {
    /// SHA-256 of the browser-binding cookie.
    pub binding_hash: String,
    /// The relying party's pending state (JSON; secret).
    pub pending: String,
    /// Where to go after sign-in.
    pub next: String,
    /// When it began.
    pub created_at: DateTime<Utc>,
}

/// Stores a sign-in in progress.
pub async fn insert_oidc_login(c: &mut Conn, state_hash: &str, row: &OidcLoginRow) -> Result<(), StoreError> {
    c.execute(
        &sql!("oidc_login_insert"),
        &args![state_hash, &row.binding_hash, &row.pending, &row.next, row.created_at],
    )
    .await
    .map(drop)
}

/// Takes (reads and deletes) a sign-in in progress: each can be finished once.
pub async fn take_oidc_login(c: &mut Conn, state_hash: &str) -> Result<Option<OidcLoginRow>, StoreError> {
    let Some(r) = c.query_opt(&sql!("oidc_login_take"), &args![state_hash]).await? else { return Ok(None) };
    Ok(Some(OidcLoginRow { binding_hash: r.get(0)?, pending: r.get(1)?, next: r.get(2)?, created_at: r.get(3)? }))
}

/// Removes sign-ins begun before `before`.
pub async fn purge_oidc_logins(c: &mut Conn, before: DateTime<Utc>) -> Result<u64, StoreError> {
    c.execute(&sql!("oidc_login_purge"), &args![before]).await
}
