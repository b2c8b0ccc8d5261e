//! The FHIR R4 read operations and the patient export: scoping (the admin
//! API's: a physician or nurse sees only their patients, anyone else's is 404
//! exactly like an unknown one), the store queries, the pure mapping of
//! [`crate::fhir::map`], and one read-access record per patient whose data a
//! response carries.

use chrono::Utc;
use serde_json::Value;

use super::{AdminService, unknown_patient};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::fhir::map::{self, DeviceRow, EpisodeRow, ObsRow, PatientRow};
use crate::fhir::search::{ObsCursor, ObsSearch, SimpleSearch, Sort};
use crate::fhir::store::{self, ObsQuery};
use crate::model::{AccessInterface, AlertQuery, ExportFormat};
use crate::policy::Operation;

/// Rows read per query when a whole record is gathered ($everything, export).
const BULK: u32 = 5_000;

/// A page of FHIR resources and the cursor of the next page.
#[derive(Debug, Clone)]
pub struct FhirPage<C> {
    /// The resources.
    pub resources: Vec<Value>,
    /// Where the next page starts, if there is one.
    pub next: Option<C>,
}

/// The patients a set of resources carries data of: Patient ids and the
/// targets of `subject` and `patient` references.
pub fn patients_in(resources: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in resources {
        let id = if r.get("resourceType").and_then(Value::as_str) == Some("Patient") {
            r.get("id").and_then(Value::as_str)
        } else {
            ["subject", "patient"]
                .iter()
                .find_map(|k| r.pointer(&format!("/{k}/reference")).and_then(Value::as_str))
                .and_then(|s| s.strip_prefix("Patient/"))
        };
        if let Some(id) = id
            && !out.iter().any(|p| p == id)
        {
            out.push(id.to_owned());
        }
    }
    out
}

fn unknown(kind: &str, id: &str) -> AdminError {
    AdminError::NotFound(format!("unknown {kind} {id}"))
}

impl AdminService {
    /// Fails with 404 unless `patient` exists and `actor` may reach it with `op`.
    async fn visible_patient(&self, actor: &Actor, op: Operation, patient: &str) -> Result<PatientRow, AdminError> {
        self.check_patient(actor, op, patient).await?;
        let p = self.admin.patient(patient).await?.ok_or_else(|| unknown_patient(patient))?;
        Ok(PatientRow { id: p.id, status: p.status })
    }

    /// Records the read of the patients `resources` carry data of (FHIR).
    async fn log_fhir(&self, actor: &Actor, resources: &[Value], what: &str) -> Result<(), AdminError> {
        self.log_access_many(actor, &patients_in(resources), AccessInterface::Fhir, what).await
    }

    /// `GET Patient/{id}`.
    pub async fn fhir_patient(&self, actor: &Actor, id: &str) -> Result<Value, AdminError> {
        let p = map::patient(&self.visible_patient(actor, Operation::ReadPatients, id).await?);
        self.log_fhir(actor, std::slice::from_ref(&p), "GET Patient/{id}").await?;
        Ok(p)
    }

    /// `GET Patient` (`_id`, `_count`; cursor = the last patient id).
    pub async fn fhir_patients(&self, actor: &Actor, s: &SimpleSearch) -> Result<FhirPage<String>, AdminError> {
        let scope = self.patient_scope(actor, Operation::ReadPatients).await?;
        let count = s.count.unwrap_or(crate::fhir::search::DEFAULT_COUNT).min(self.max_page);
        let (resources, next): (Vec<Value>, Option<String>) = if let Some(id) = &s.patient {
            let visible = scope.as_ref().is_none_or(|mine| mine.contains(id));
            let found = if visible { self.admin.patient(id).await? } else { None };
            (found.into_iter().map(|p| map::patient(&PatientRow { id: p.id, status: p.status })).collect(), None)
        } else {
            let mut items = self.admin.patients(s.cursor.as_deref(), count + 1, scope.as_deref()).await?;
            let more = items.len() > count as usize;
            items.truncate(count as usize);
            let next = more.then(|| items.last().map(|p| p.id.clone())).flatten();
            let r = items.into_iter().map(|p| map::patient(&PatientRow { id: p.id, status: p.status })).collect();
            (r, next)
        };
        self.log_fhir(actor, &resources, "GET Patient").await?;
        Ok(FhirPage { resources, next })
    }

    /// Devices ever enrolled to `patients` (or the one `device`), as FHIR;
    /// `Device.patient` only names a patient the reader may see.
    async fn device_resources(
        &self,
        scope: Option<&[String]>,
        device: Option<&str>,
        patients: Option<&[String]>,
    ) -> Result<Vec<Value>, AdminError> {
        let now = Utc::now();
        let rows = store::devices(&self.db, device, patients).await?;
        Ok(rows
            .iter()
            .filter(|d| scope.is_none_or(|mine| d.enrolments.iter().any(|(p, _, _)| mine.contains(p))))
            .map(|d| {
                let current = d.current(now).filter(|p| scope.is_none_or(|mine| mine.iter().any(|m| m.as_str() == *p)));
                map::device(&DeviceRow {
                    id: d.id.clone(),
                    kind: d.kind.clone(),
                    status: d.status.clone(),
                    patient: current.map(str::to_owned),
                })
            })
            .collect())
    }

    /// `GET Device/{id}`: visible when enrolled (now or before) to a visible patient.
    pub async fn fhir_device(&self, actor: &Actor, id: &str) -> Result<Value, AdminError> {
        let scope = self.patient_scope(actor, Operation::ReadPatients).await?;
        let mut found = self.device_resources(scope.as_deref(), Some(id), None).await?;
        let d = found.pop().ok_or_else(|| unknown("device", id))?;
        self.log_fhir(actor, std::slice::from_ref(&d), "GET Device/{id}").await?;
        Ok(d)
    }

    /// `GET Device?patient=`: the devices enrolled (now or before) to the
    /// patient, or to any visible patient.
    pub async fn fhir_devices(&self, actor: &Actor, patient: Option<&str>) -> Result<Vec<Value>, AdminError> {
        let scope = self.patient_scope(actor, Operation::ReadPatients).await?;
        let resources = match patient {
            Some(p) => {
                self.visible_patient(actor, Operation::ReadPatients, p).await?;
                self.device_resources(scope.as_deref(), None, Some(&[p.to_owned()][..])).await?
            }
            None => self.device_resources(scope.as_deref(), None, scope.as_deref()).await?,
        };
        self.log_fhir(actor, &resources, "GET Device").await?;
        Ok(resources)
    }

    /// Observation pages of a visible patient, unlogged.
    async fn observation_page(&self, s: &ObsSearch) -> Result<(Vec<Vec<ObsRow>>, Option<ObsCursor>), AdminError> {
        // Each Observation is 1 or 2 rows: 2(n+1) rows hold at least n+1
        // Observations when there are that many, and the n-th is complete
        // as soon as an (n+1)-th begins.
        let n = s.count as usize;
        let q = ObsQuery {
            patient: &s.patient,
            codes: &s.stored,
            since: s.since,
            until: s.until,
            sort: s.sort,
            cursor: s.cursor.as_ref(),
            limit: s.count.saturating_add(1).saturating_mul(2),
        };
        let rows = store::observations(&self.db, &q).await?;
        let mut groups: Vec<Vec<ObsRow>> =
            map::group_rows(&rows).into_iter().map(|g| g.into_iter().cloned().collect()).collect();
        let next = if groups.len() > n {
            groups.truncate(n);
            groups
                .last()
                .and_then(|g| g.first())
                .map(|r| ObsCursor { time: r.time, group: map::group_code(&r.code).to_owned() })
        } else {
            None
        };
        Ok((groups, next))
    }

    /// `GET Observation?patient=...` (code, date, `_count`, `_sort`, keyset cursor).
    pub async fn fhir_observations(&self, actor: &Actor, s: &ObsSearch) -> Result<FhirPage<ObsCursor>, AdminError> {
        self.visible_patient(actor, Operation::ReadPatients, &s.patient).await?;
        let (groups, next) = self.observation_page(s).await?;
        let resources: Vec<Value> = groups.iter().map(|g| map::observation(&g.iter().collect::<Vec<_>>())).collect();
        // A search of a visible patient reads that patient's data even when empty.
        self.log_access(actor, &s.patient, AccessInterface::Fhir, "GET Observation").await?;
        Ok(FhirPage { resources, next })
    }

    /// `GET Observation/{id}` (`{time µs}-{pipeline id}`, see [`map::obs_id`]).
    pub async fn fhir_observation(&self, actor: &Actor, id: &str) -> Result<Value, AdminError> {
        let not_found = || unknown("Observation", id);
        let (time, hash) = map::parse_obs_id(id).ok_or_else(not_found)?;
        let candidates = match self.patient_scope(actor, Operation::ReadPatients).await? {
            Some(mine) => mine,
            None => store::patient_ids(&self.db).await?,
        };
        let (patient, code) = candidates
            .iter()
            .find_map(|p| map::match_obs_id(p, time, hash).map(|c| (p.clone(), c)))
            .ok_or_else(not_found)?;
        let group = map::group_code(code.loinc()).to_owned();
        let rows: Vec<ObsRow> = store::observations_at(&self.db, &patient, time)
            .await?
            .into_iter()
            .filter(|r| map::group_code(&r.code) == group)
            .collect();
        if rows.is_empty() {
            return Err(not_found());
        }
        let o = map::observation(&rows.iter().collect::<Vec<_>>());
        self.log_fhir(actor, std::slice::from_ref(&o), "GET Observation/{id}").await?;
        Ok(o)
    }

    /// One episode as a DetectedIssue (scoped; 404 otherwise), unlogged.
    async fn issue(&self, actor: &Actor, episode: &str) -> Result<(Value, EpisodeRow), AdminError> {
        let d = self.alert(actor, episode).await?;
        let a = d.alert.ok_or_else(|| unknown("DetectedIssue", episode))?;
        let state = d.alerting.unwrap_or(Value::Null);
        let acks: Vec<&Value> = state.get("acks").and_then(Value::as_array).into_iter().flatten().collect();
        let acknowledged =
            acks.iter().any(|k| k.get("severity").is_some() && k.get("severity") == state.get("severity"));
        let row = EpisodeRow {
            id: a.episode_id,
            patient_id: a.patient_id,
            rule_id: a.rule_id,
            code: a.code,
            severity: a.severity,
            status: a.status,
            acknowledged,
            opened_at: a.opened_at,
            resolved_at: a.resolved_at,
            summary: a.summary,
            rules_version: a.rules_version,
            evidence: d.evidence.as_ref().map(map::evidence_readings).unwrap_or_default(),
            acks: acks
                .iter()
                .filter_map(|k| {
                    let by = k.get("by")?.as_str()?.to_owned();
                    let at: chrono::DateTime<Utc> = k.get("at")?.as_str()?.parse().ok()?;
                    Some((by, at))
                })
                .collect(),
        };
        Ok((map::detected_issue(&row), row))
    }

    /// `GET DetectedIssue/{id}`.
    pub async fn fhir_issue(&self, actor: &Actor, id: &str) -> Result<Value, AdminError> {
        let (v, _) = self.issue(actor, id).await?;
        self.log_fhir(actor, std::slice::from_ref(&v), "GET DetectedIssue/{id}").await?;
        Ok(v)
    }

    /// Episodes (newest first) of one visible patient or of every visible one, unlogged.
    async fn issues_page(
        &self,
        actor: &Actor,
        patient: Option<&str>,
        cursor: Option<String>,
        count: u32,
    ) -> Result<(Vec<(Value, EpisodeRow)>, Option<String>), AdminError> {
        if let Some(p) = patient {
            self.visible_patient(actor, Operation::ReadAlerts, p).await?;
        }
        let q =
            AlertQuery { patient: patient.map(str::to_owned), after: cursor, limit: Some(count), ..Default::default() };
        let page = self.list_alerts(actor, &q).await?;
        let mut out = Vec::with_capacity(page.items.len());
        for a in &page.items {
            out.push(self.issue(actor, &a.episode_id).await?);
        }
        Ok((out, page.next))
    }

    /// `GET DetectedIssue?patient=` (`_count`, cursor), newest first.
    pub async fn fhir_issues(&self, actor: &Actor, s: &SimpleSearch) -> Result<FhirPage<String>, AdminError> {
        let count = s.count.unwrap_or(crate::fhir::search::DEFAULT_COUNT);
        let (items, next) = self.issues_page(actor, s.patient.as_deref(), s.cursor.clone(), count).await?;
        let resources: Vec<Value> = items.into_iter().map(|(v, _)| v).collect();
        if let Some(p) = &s.patient {
            self.log_access(actor, p, AccessInterface::Fhir, "GET DetectedIssue").await?;
        } else {
            self.log_fhir(actor, &resources, "GET DetectedIssue").await?;
        }
        Ok(FhirPage { resources, next })
    }

    /// The monitoring periods of a visible patient as EpisodeOfCare, oldest first, unlogged.
    async fn care_episodes(&self, actor: &Actor, patient: &str) -> Result<Vec<Value>, AdminError> {
        let view = self.patient_periods(actor, patient).await?;
        let now = Utc::now();
        Ok(view.periods.iter().map(|p| map::episode_of_care(&view.patient, p, now)).collect())
    }

    /// `GET EpisodeOfCare?patient=`: the patient's monitoring periods.
    pub async fn fhir_episodes_of_care(&self, actor: &Actor, patient: &str) -> Result<Vec<Value>, AdminError> {
        let out = self.care_episodes(actor, patient).await?;
        self.log_access(actor, patient, AccessInterface::Fhir, "GET EpisodeOfCare").await?;
        Ok(out)
    }

    /// `GET EpisodeOfCare/{id}` (`mp-{period id}`).
    pub async fn fhir_episode_of_care(&self, actor: &Actor, id: &str) -> Result<Value, AdminError> {
        let not_found = || unknown("EpisodeOfCare", id);
        let period = map::parse_episode_of_care_id(id).ok_or_else(not_found)?;
        let patient = self.period_patient(period).await?.ok_or_else(not_found)?;
        // Someone else's patient: 404 exactly like an unknown period.
        let all = self.care_episodes(actor, &patient).await.map_err(|e| match e {
            AdminError::NotFound(_) | AdminError::Forbidden(_) => not_found(),
            e => e,
        })?;
        let v = all.into_iter().find(|v| v["id"] == id).ok_or_else(not_found)?;
        self.log_fhir(actor, std::slice::from_ref(&v), "GET EpisodeOfCare/{id}").await?;
        Ok(v)
    }

    /// Everything about a visible patient, unlogged: the Patient, every stored
    /// observation row, the episodes, the devices.
    async fn record(
        &self,
        actor: &Actor,
        op: Operation,
        id: &str,
    ) -> Result<(PatientRow, Vec<ObsRow>, Vec<(Value, EpisodeRow)>, Vec<Value>), AdminError> {
        let patient = self.visible_patient(actor, op, id).await?;
        let mut rows: Vec<ObsRow> = Vec::new();
        let mut cursor: Option<ObsCursor> = None;
        loop {
            let q = ObsQuery {
                patient: id,
                codes: &[],
                since: None,
                until: None,
                sort: Sort::Asc,
                cursor: cursor.as_ref(),
                limit: BULK,
            };
            let batch = store::observations(&self.db, &q).await?;
            let full = batch.len() == BULK as usize;
            // Keyset on (time, group): drop a trailing group the page may have cut.
            let mut batch = batch;
            if full && let Some(last) = batch.last().cloned() {
                let key = |r: &ObsRow| (r.time, map::group_code(&r.code).to_owned());
                let cut = key(&last);
                let keep = batch.iter().take_while(|r| key(r) != cut).count();
                if keep > 0 {
                    batch.truncate(keep);
                }
            }
            cursor = batch.last().map(|r| ObsCursor { time: r.time, group: map::group_code(&r.code).to_owned() });
            rows.extend(batch);
            if !full {
                break;
            }
        }
        let mut issues = Vec::new();
        let mut after = None;
        loop {
            let (mut page, next) = self.issues_page(actor, Some(id), after, self.max_page).await?;
            issues.append(&mut page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let scope = self.patient_scope(actor, op).await?;
        let devices = self.device_resources(scope.as_deref(), None, Some(&[id.to_owned()][..])).await?;
        Ok((patient, rows, issues, devices))
    }

    /// The `Patient/$everything` resources: Patient, EpisodeOfCare (monitoring periods), Devices, Observations, DetectedIssues.
    async fn everything_resources(&self, actor: &Actor, op: Operation, id: &str) -> Result<Vec<Value>, AdminError> {
        let (patient, rows, issues, devices) = self.record(actor, op, id).await?;
        let mut out = vec![map::patient(&patient)];
        out.extend(self.care_episodes(actor, id).await?);
        out.extend(devices);
        out.extend(map::group_rows(&rows).iter().map(|g| map::observation(g)));
        out.extend(issues.into_iter().map(|(v, _)| v));
        Ok(out)
    }

    /// `GET Patient/{id}/$everything`.
    pub async fn fhir_everything(&self, actor: &Actor, id: &str) -> Result<Vec<Value>, AdminError> {
        let out = self.everything_resources(actor, Operation::ReadPatients, id).await?;
        self.log_access(actor, id, AccessInterface::Fhir, "GET Patient/{id}/$everything").await?;
        Ok(out)
    }

    /// Exports all data about a patient (GDPR right of access): the
    /// `$everything` Bundle (a `collection`, with `base` as fullUrl base) or
    /// the CSV of [`crate::fhir::csv`]. Returns (content type, body).
    pub async fn export_patient(
        &self,
        actor: &Actor,
        id: &str,
        format: ExportFormat,
        interface: AccessInterface,
        base: &str,
    ) -> Result<(&'static str, String), AdminError> {
        self.allow(actor, Operation::ExportPatientData)?;
        let out = match format {
            ExportFormat::Fhir => {
                let resources = self.everything_resources(actor, Operation::ExportPatientData, id).await?;
                let mut bundle = map::searchset(base, resources, &format!("{base}/Patient/{id}/$everything"), None);
                if let Some(m) = bundle.as_object_mut() {
                    m.insert("type".into(), Value::String("collection".into()));
                    m.remove("link");
                    for e in m.get_mut("entry").and_then(Value::as_array_mut).into_iter().flatten() {
                        if let Some(e) = e.as_object_mut() {
                            e.remove("search");
                        }
                    }
                }
                ("application/fhir+json", serde_json::to_string_pretty(&bundle).unwrap_or_default())
            }
            ExportFormat::Csv => {
                let (_, rows, issues, _) = self.record(actor, Operation::ExportPatientData, id).await?;
                let episodes: Vec<EpisodeRow> = issues.into_iter().map(|(_, e)| e).collect();
                ("text/csv; charset=utf-8", crate::fhir::csv::export(&rows, &episodes))
            }
        };
        let what = match format {
            ExportFormat::Fhir => "export format=fhir",
            ExportFormat::Csv => "export format=csv",
        };
        self.log_access(actor, id, interface, what).await?;
        Ok(out)
    }
}
