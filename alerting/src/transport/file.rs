//! Local transports for the embedded mode: emails as `.eml` files in a
//! folder, SMS as JSON lines appended to a file. Both are idempotent by key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{DeliveryError, Outbound, Receipt, Transport, wrong_channel};
use crate::severity::Channel;

fn key_file_name(key: &str) -> String {
    crate::notification::hex(&Sha256::digest(key.as_bytes())[..16])
}

/// Writes each email to `{dir}/{hash of key}.eml` (atomically, via a
/// temporary file and a rename). An existing file means "already delivered".
#[derive(Debug, Clone)]
pub struct FileEmailTransport {
    dir: PathBuf,
}

impl FileEmailTransport {
    /// Uses (and creates if needed, on first send) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The path a key is written to.
    pub fn path_for(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.eml", key_file_name(key)))
    }
}

/// Creates `dir` (and missing parents) with mode 0700.
async fn private_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::DirBuilder::new().recursive(true).mode(vitalwatch_platform::private_fs::DIR_MODE).create(dir).await
}

/// Opens `path` for writing (appending or truncating), created with mode 0600;
/// an existing file with wider permissions is restricted before any write.
async fn private_file(path: &Path, append: bool) -> std::io::Result<tokio::fs::File> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut o = tokio::fs::OpenOptions::new();
    o.create(true).mode(vitalwatch_platform::private_fs::FILE_MODE);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    let f = o.open(path).await?;
    let mode = f.metadata().await?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o700)).await?;
    }
    Ok(f)
}

const EML: &str = "file-eml";
const JSONL: &str = "file-sms-jsonl";

fn io_err(t: &'static str, what: &str, e: std::io::Error) -> DeliveryError {
    DeliveryError::transient(t, format!("{what}: {e}"))
}

#[async_trait]
impl Transport for FileEmailTransport {
    fn name(&self) -> &'static str {
        EML
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, DeliveryError> {
        let Outbound::Email(email) = message else {
            return Err(wrong_channel(EML));
        };
        let path = self.path_for(&email.key);
        let receipt = Receipt { transport: EML.to_string(), provider_message_id: Some(path.display().to_string()) };
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(receipt);
        }
        private_dir(&self.dir).await.map_err(|e| io_err(EML, "cannot create the mail folder", e))?;
        let tmp = path.with_extension("eml.tmp");
        // Patient data: created 0600, before a byte is written.
        let mut f = private_file(&tmp, false).await.map_err(|e| io_err(EML, "cannot create the message", e))?;
        f.write_all(&email.message.formatted()).await.map_err(|e| io_err(EML, "cannot write the message", e))?;
        f.sync_all().await.map_err(|e| io_err(EML, "cannot write the message", e))?;
        drop(f);
        tokio::fs::rename(&tmp, &path).await.map_err(|e| io_err(EML, "cannot move the message in place", e))?;
        Ok(receipt)
    }
}

/// One line of the SMS file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsLine {
    /// Idempotency key.
    pub key: String,
    /// Recipient number.
    pub to: String,
    /// Text.
    pub body: String,
    /// When it was written (RFC 3339).
    pub at: String,
}

/// Appends each SMS as one JSON line to a file; keys already in the file are
/// not written again.
#[derive(Debug)]
pub struct FileSmsTransport {
    path: PathBuf,
    sent: Mutex<Option<HashSet<String>>>,
}

impl FileSmsTransport {
    /// Appends to `path` (created on first send).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), sent: Mutex::new(None) }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn load(path: &Path) -> Result<HashSet<String>, DeliveryError> {
        match tokio::fs::read_to_string(path).await {
            Ok(s) => Ok(s.lines().filter_map(|l| serde_json::from_str::<SmsLine>(l).ok()).map(|l| l.key).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
            Err(e) => Err(io_err(JSONL, "cannot read the SMS file", e)),
        }
    }
}

#[async_trait]
impl Transport for FileSmsTransport {
    fn name(&self) -> &'static str {
        JSONL
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, DeliveryError> {
        let Outbound::Sms(sms) = message else {
            return Err(wrong_channel(JSONL));
        };
        let mut guard = self.sent.lock().await;
        if guard.is_none() {
            *guard = Some(Self::load(&self.path).await?);
        }
        let sent = guard.get_or_insert_with(HashSet::new);
        let receipt = Receipt { transport: JSONL.to_string(), provider_message_id: Some(key_file_name(&sms.key)) };
        if sent.contains(&sms.key) {
            return Ok(receipt);
        }
        let line = SmsLine {
            key: sms.key.clone(),
            to: sms.to.to_string(),
            body: sms.body.clone(),
            at: Utc::now().to_rfc3339(),
        };
        let mut text = serde_json::to_string(&line).map_err(|e| DeliveryError::permanent(JSONL, e.to_string()))?;
        text.push('\n');
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            private_dir(parent).await.map_err(|e| io_err(JSONL, "cannot create the folder", e))?;
        }
        let mut f = private_file(&self.path, true).await.map_err(|e| io_err(JSONL, "cannot open the SMS file", e))?;
        f.write_all(text.as_bytes()).await.map_err(|e| io_err(JSONL, "cannot append", e))?;
        f.flush().await.map_err(|e| io_err(JSONL, "cannot flush", e))?;
        sent.insert(sms.key.clone());
        Ok(receipt)
    }
}
