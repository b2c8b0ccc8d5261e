//! `vitalwatch ingest-client ...`: the credentials of the HTTP ingestion
//! endpoint (docs/http-ingest.md), through the admin service (operators,
//! audited).

use std::path::Path;

use clap::Subcommand;
use vitalwatch_admin::Actor;
use vitalwatch_admin::service::ingest_clients::NewIngestClientRequest;

use super::admin::service;
use super::registry::StoreArgs;

/// `vitalwatch ingest-client ...`
#[derive(Debug, Subcommand)]
pub enum IngestClientCommand {
    /// Create a credential; its secret is printed once and stored only as a hash.
    /// A device credential (`--device D`) posts only for its device; an app
    /// credential (`--app`) for the devices and patients (manual entries) granted.
    Add {
        /// Unique name (1-64 of A-Z a-z 0-9 _ . -).
        name: String,
        /// An app credential (several devices and/or patients).
        #[arg(long)]
        app: bool,
        /// A device it may post readings and status for (repeat for an app).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// A patient it may post manual entries for (apps; repeat).
        #[arg(long = "patient")]
        patients: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List credentials (never their secrets): kind, grants, creation, state.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a credential by name (refused by the ingest role within
    /// `ingest.http_credentials_refresh_secs`).
    Revoke {
        /// Credential name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vitalwatch ingest-client ...`.
pub async fn ingest_client(config: Option<&Path>, cmd: IngestClientCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        IngestClientCommand::Add { name, app, devices, patients, store } => {
            let req = NewIngestClientRequest { name: name.clone(), app, devices, patients };
            let created = service(&store, config).await?.create_ingest_client(&actor, &req).await?;
            eprintln!(
                "ingest client {name} ({}) created; its secret is shown only now, keep it in a secret store:",
                created.client.kind
            );
            println!("{}", created.secret);
        }
        IngestClientCommand::List { store } => {
            for c in service(&store, config).await?.list_ingest_clients(&actor).await? {
                println!(
                    "{}\t{}\tdevices {}\tpatients {}\tcreated {} by {}\t{}",
                    c.name,
                    c.kind,
                    if c.devices.is_empty() { "-".to_owned() } else { c.devices.join(",") },
                    if c.patients.is_empty() { "-".to_owned() } else { c.patients.join(",") },
                    c.created_at.to_rfc3339(),
                    c.created_by,
                    match c.revoked_at {
                        Some(r) => format!("revoked {}", r.to_rfc3339()),
                        None => "active".to_owned(),
                    }
                );
            }
        }
        IngestClientCommand::Revoke { name, store } => {
            service(&store, config).await?.revoke_ingest_client(&actor, &name).await?;
            println!("ingest client {name} revoked");
        }
    }
    Ok(())
}
