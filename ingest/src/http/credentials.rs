//! Credentials of the HTTP ingestion endpoint: per-device and per-app bearer
//! secrets, stored as their SHA-256 (`ingest_clients`, migration 0035; managed
//! by operators through `vitalwatch ingest-client` and the admin API).
//!
//! [`Credentials`] is the pure lookup (hash -> grants); [`CredentialCache`]
//! holds the current set and reloads it from the database every
//! `ingest.http_credentials_refresh_secs` and on demand (an unknown secret asks
//! for a reload, at most one per `ingest.registry_min_refresh_ms`). A
//! revocation therefore takes effect within the refresh period. Secrets are
//! never logged, only credential names.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use vitalwatch_platform::args;
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::sql;
use vitalwatch_platform::store::StoreError;
use vitalwatch_platform::store::db::Db;

/// The stored form of a secret: SHA-256, lower-case hex (as admin API tokens).
pub fn hash(secret: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(secret.as_bytes()).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One row of the credentials query: name, kind (`device`/`app`), secret
/// hash, grant kind (`device`/`patient`) and grant target (a credential
/// without grants has one row with both `None`).
pub type ClientRow = (String, String, String, Option<String>, Option<String>);

/// What a request posts for (from its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A device's readings or status.
    Device(&'a str),
    /// A patient's manual entries.
    Patient(&'a str),
}

/// One active credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    /// Its name (logged; never the secret).
    pub name: String,
    /// True for an app credential, false for a device credential.
    pub app: bool,
    /// Devices it may post readings and status for.
    pub devices: HashSet<String>,
    /// Patients it may post manual entries for.
    pub patients: HashSet<String>,
}

impl Credential {
    /// True if it may post for `target`.
    pub fn may_post(&self, target: Target<'_>) -> bool {
        match target {
            Target::Device(d) => self.devices.contains(d),
            Target::Patient(p) => self.patients.contains(p),
        }
    }
}

/// The active credentials, by the hash of their secret.
#[derive(Debug, Default)]
pub struct Credentials {
    by_hash: HashMap<String, Arc<Credential>>,
}

impl Credentials {
    /// The credential of `secret`, if active.
    pub fn lookup(&self, secret: &str) -> Option<Arc<Credential>> {
        if secret.is_empty() || secret.len() > 128 {
            return None;
        }
        self.by_hash.get(&hash(secret)).cloned()
    }

    /// Number of active credentials.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Builds the set from rows (name, kind, hash, grant kind, grant target).
    pub fn from_rows(rows: impl IntoIterator<Item = ClientRow>) -> Self {
        let mut by_hash: HashMap<String, Credential> = HashMap::new();
        for (name, kind, hash, grant, target) in rows {
            let c =
                by_hash.entry(hash).or_insert_with(|| Credential { name, app: kind == "app", ..Default::default() });
            match (grant.as_deref(), target) {
                (Some("device"), Some(t)) => {
                    c.devices.insert(t);
                }
                (Some("patient"), Some(t)) => {
                    c.patients.insert(t);
                }
                _ => {}
            }
        }
        Credentials { by_hash: by_hash.into_iter().map(|(h, c)| (h, Arc::new(c))).collect() }
    }
}

/// Loads the active credentials.
///
/// # Errors
///
/// The database's.
pub async fn load(db: &Db) -> Result<Credentials, StoreError> {
    let rows = db.run(async |c| c.query(&sql!("active_ingest_clients"), &args![]).await).await?;
    let mut out: Vec<ClientRow> = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?));
    }
    Ok(Credentials::from_rows(out))
}

struct Inner {
    current: RwLock<(Arc<Credentials>, Instant)>,
    db: Db,
    wake: Notify,
    /// Start of the last completed load attempt.
    loads: watch::Sender<Instant>,
}

/// The credentials, refreshed in the background.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

impl CredentialCache {
    /// Loads the credentials once.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn open(db: Db) -> Result<CredentialCache, StoreError> {
        let started = Instant::now();
        let set = load(&db).await?;
        let (loads, _) = watch::channel(started);
        Ok(CredentialCache {
            inner: Arc::new(Inner { current: RwLock::new((Arc::new(set), started)), db, wake: Notify::new(), loads }),
        })
    }

    /// The current set.
    pub fn get(&self) -> Arc<Credentials> {
        self.inner.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// The credential of `secret`. When unknown and the set was loaded before
    /// `arrived`, asks for a reload and waits for it at most `hold` (a
    /// credential created a moment ago works at once).
    pub async fn authenticate(&self, secret: &str, arrived: Instant, hold: Duration) -> Option<Arc<Credential>> {
        if let Some(c) = self.get().lookup(secret) {
            return Some(c);
        }
        let loaded_at = self.inner.current.read().unwrap_or_else(|e| e.into_inner()).1;
        if loaded_at >= arrived || hold.is_zero() || secret.is_empty() {
            return None;
        }
        let mut loads = self.inner.loads.subscribe();
        self.inner.wake.notify_one();
        let waited = tokio::time::timeout(hold, async {
            loop {
                if *loads.borrow_and_update() >= arrived {
                    return;
                }
                if loads.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if waited.is_err() {
            return None;
        }
        self.get().lookup(secret)
    }

    /// Reloads; keeps the previous set on failure. True if replaced.
    pub async fn reload(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, load(&self.inner.db)).await {
            Ok(Ok(set)) => {
                *self.inner.current.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(set), started);
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(message = "Ingest credentials reload failed; keeping the previous set.", error = %e);
                false
            }
            Err(_) => {
                tracing::warn!(message = "Ingest credentials reload timed out; keeping the previous set.");
                false
            }
        };
        metrics::counter!("vitalwatch_ingest_http_credential_reloads_total",
            "outcome" => if outcome { "ok" } else { "failed" })
        .increment(1);
        self.inner.loads.send_replace(started);
        outcome
    }

    /// Reloads every `period`, and on demand at most once per `min_interval`,
    /// until `shutdown`.
    pub fn spawn_refresher(
        &self,
        period: Duration,
        min_interval: Duration,
        load_timeout: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(last + period) => {}
                    _ = this.inner.wake.notified() => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(last + min_interval) => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                    _ = shutdown.cancelled() => return,
                }
                last = Instant::now();
                this.reload(load_timeout).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, kind: &str, secret: &str, g: Option<(&str, &str)>) -> ClientRow {
        (name.into(), kind.into(), hash(secret), g.map(|g| g.0.to_owned()), g.map(|g| g.1.to_owned()))
    }

    #[test]
    fn grants_decide_what_a_credential_may_post() {
        let set = Credentials::from_rows([
            row("cuff-1", "device", "s1", Some(("device", "cuff-1"))),
            row("app", "app", "s2", Some(("device", "scale-9"))),
            row("app", "app", "s2", Some(("patient", "p-1"))),
            row("empty", "app", "s3", None),
        ]);
        assert_eq!(set.len(), 3);
        let dev = set.lookup("s1").unwrap();
        assert!(!dev.app && dev.may_post(Target::Device("cuff-1")));
        assert!(!dev.may_post(Target::Device("cuff-2")) && !dev.may_post(Target::Patient("cuff-1")));
        let app = set.lookup("s2").unwrap();
        assert!(app.app && app.may_post(Target::Device("scale-9")) && app.may_post(Target::Patient("p-1")));
        assert!(!app.may_post(Target::Patient("p-2")) && !app.may_post(Target::Device("p-1")));
        assert!(!set.lookup("s3").unwrap().may_post(Target::Device("x")));
        assert!(set.lookup("unknown").is_none() && set.lookup("").is_none());
        assert!(set.lookup(&"x".repeat(200)).is_none());
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
