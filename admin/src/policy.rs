//! Authorization rules, pure: what each role may do, and on which patients.
//!
//! Operators may do everything. A physician may read their own patients
//! (care team: responsible or deputy), change those patients' care program and
//! thresholds (a clinical decision that belongs to them), act on their alerts
//! and read the audit trail about them, and read their own directory entry.
//! Physicians may not register patients, manage devices, physicians, care
//! teams or tokens: those are operations tasks (the rota, the device fleet,
//! access control), and letting a physician add themselves to a care team
//! would let them read any patient.

use crate::actor::Role;

/// An administrative operation, as far as authorization is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// List or read patients.
    ReadPatients,
    /// Register patients.
    AddPatient,
    /// List or read devices.
    ReadDevices,
    /// Register, enrol (move), unenrol or retire devices.
    ManageDevices,
    /// Read a patient's care program and thresholds.
    ReadRules,
    /// Change a patient's care program and thresholds.
    EditRules,
    /// List the physicians' directory.
    ListPhysicians,
    /// Read one physician's entry.
    ReadPhysician,
    /// Create or change physicians.
    ManagePhysicians,
    /// Read a patient's care team.
    ReadCareTeam,
    /// Set a patient's care team.
    SetCareTeam,
    /// List or read alert episodes.
    ReadAlerts,
    /// Acknowledge, snooze or close alert episodes.
    ActOnAlerts,
    /// Read the audit trail.
    ReadAudit,
    /// Create, list or revoke API tokens.
    ManageTokens,
    /// Forward an episode to a specialist (tele-expertise).
    RequestExpertise,
    /// Read and answer the tele-expertise requests addressed to oneself.
    AnswerExpertise,
    /// Create, change or disable user accounts of the web workspace.
    ManageUsers,
    /// Read the read-access log of a patient (who read the patient's data).
    ReadAccessLog,
    /// Export all data about a patient (GDPR right of access: FHIR Bundle, CSV).
    ExportPatientData,
    /// Create, list or revoke the credentials of the HTTP ingestion endpoint
    /// (operators only: they open a way for readings into the platform).
    ManageIngestClients,
    /// Include a patient in a monitoring programme, discharge them, read their periods.
    ManageLifecycle,
    /// Erase or pseudonymise a patient's data (GDPR art. 17; the DPO, operators only).
    ErasePatientData,
    /// Read the monthly activity report (operators: every patient;
    /// physicians and nurses: their own patients).
    ReadReports,
}

/// What an actor may reach with an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    All,
    /// Only the actor's own patients (and what belongs to them).
    OwnPatients,
    /// Only the actor's own entry (physicians reading themselves).
    OwnEntry,
    /// Nothing: the role forbids the operation.
    Denied,
}

/// The scope `role` has for `op`.
pub fn scope(role: &Role, op: Operation) -> Scope {
    use Operation::*;
    match role {
        Role::Operator => Scope::All,
        Role::Physician(_) => match op {
            ReadPatients | ReadRules | EditRules | ReadCareTeam | ReadAlerts | ActOnAlerts | ReadAudit => {
                Scope::OwnPatients
            }
            RequestExpertise => Scope::OwnPatients,
            ReadAccessLog | ExportPatientData => Scope::OwnPatients,
            ReadReports => Scope::OwnPatients,
            ReadPhysician | AnswerExpertise => Scope::OwnEntry,
            AddPatient | ReadDevices | ManageDevices | ListPhysicians | ManagePhysicians | SetCareTeam
            | ManageTokens | ManageUsers | ManageIngestClients => Scope::Denied,
            // Including and discharging is the prescribing physician's decision.
            ManageLifecycle => Scope::OwnPatients,
            ErasePatientData => Scope::Denied,
        },
        // A nurse triages (reads, acknowledges, snoozes, closes, forwards) but a
        // threshold is a medical decision: EditRules is the physician's.
        Role::Nurse(_) => match op {
            ReadPatients | ReadRules | ReadCareTeam | ReadAlerts | ActOnAlerts | ReadAudit | RequestExpertise => {
                Scope::OwnPatients
            }
            ReadReports => Scope::OwnPatients,
            AnswerExpertise => Scope::OwnEntry,
            // Exporting a whole record and reading who accessed it are the
            // physician's (or the operators') acts, not the triage role's.
            ReadAccessLog | ExportPatientData => Scope::Denied,
            EditRules | AddPatient | ReadDevices | ManageDevices | ListPhysicians | ReadPhysician
            | ManagePhysicians | SetCareTeam | ManageTokens | ManageUsers | ManageIngestClients => Scope::Denied,
            ManageLifecycle | ErasePatientData => Scope::Denied,
        },
        // A specialist sees the requests addressed to them, nothing else.
        Role::Specialist(_) => match op {
            AnswerExpertise => Scope::OwnEntry,
            _ => Scope::Denied,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_alerting::PhysicianId;

    const ALL: [Operation; 24] = [
        Operation::ReadPatients,
        Operation::AddPatient,
        Operation::ReadDevices,
        Operation::ManageDevices,
        Operation::ReadRules,
        Operation::EditRules,
        Operation::ListPhysicians,
        Operation::ReadPhysician,
        Operation::ManagePhysicians,
        Operation::ReadCareTeam,
        Operation::SetCareTeam,
        Operation::ReadAlerts,
        Operation::ActOnAlerts,
        Operation::ReadAudit,
        Operation::ManageTokens,
        Operation::RequestExpertise,
        Operation::AnswerExpertise,
        Operation::ManageUsers,
        Operation::ReadAccessLog,
        Operation::ExportPatientData,
        Operation::ManageIngestClients,
        Operation::ManageLifecycle,
        Operation::ErasePatientData,
        Operation::ReadReports,
    ];

    #[test]
    fn operators_may_do_everything() {
        for op in ALL {
            assert_eq!(scope(&Role::Operator, op), Scope::All, "{op:?}");
        }
    }

    #[test]
    fn physicians_are_limited_to_their_patients_and_never_manage_the_platform() {
        let dr = Role::Physician(PhysicianId::new("dr-a").unwrap());
        for op in ALL {
            let s = scope(&dr, op);
            assert_ne!(s, Scope::All, "a physician must never get unrestricted {op:?}");
        }
        for op in [
            Operation::ManageDevices,
            Operation::ManageTokens,
            Operation::ManagePhysicians,
            Operation::SetCareTeam,
            Operation::ManageIngestClients,
        ] {
            assert_eq!(scope(&dr, op), Scope::Denied, "{op:?}");
        }
        assert_eq!(scope(&dr, Operation::ActOnAlerts), Scope::OwnPatients);
        assert_eq!(scope(&dr, Operation::EditRules), Scope::OwnPatients);
        assert_eq!(scope(&dr, Operation::ReadPhysician), Scope::OwnEntry);
        assert_eq!(scope(&dr, Operation::ReadAccessLog), Scope::OwnPatients);
        assert_eq!(scope(&dr, Operation::ExportPatientData), Scope::OwnPatients);
        assert_eq!(scope(&dr, Operation::ManageLifecycle), Scope::OwnPatients);
        assert_eq!(scope(&dr, Operation::ErasePatientData), Scope::Denied);
    }

    #[test]
    fn nurses_triage_their_patients_but_never_change_thresholds() {
        let nurse = Role::Nurse("ide-a".into());
        for op in ALL {
            assert_ne!(scope(&nurse, op), Scope::All, "a nurse must never get unrestricted {op:?}");
        }
        assert_eq!(scope(&nurse, Operation::EditRules), Scope::Denied);
        assert_eq!(scope(&nurse, Operation::ReadRules), Scope::OwnPatients);
        assert_eq!(scope(&nurse, Operation::ActOnAlerts), Scope::OwnPatients);
        assert_eq!(scope(&nurse, Operation::RequestExpertise), Scope::OwnPatients);
        assert_eq!(scope(&nurse, Operation::ManageUsers), Scope::Denied);
        assert_eq!(scope(&nurse, Operation::ReadReports), Scope::OwnPatients);
    }

    #[test]
    fn activity_reports_cover_the_care_teams_own_patients() {
        assert_eq!(scope(&Role::Operator, Operation::ReadReports), Scope::All);
        assert_eq!(
            scope(&Role::Physician(PhysicianId::new("dr-a").unwrap()), Operation::ReadReports),
            Scope::OwnPatients
        );
        assert_eq!(scope(&Role::Nurse("ide-a".into()), Operation::ReadReports), Scope::OwnPatients);
        assert_eq!(scope(&Role::Specialist("sp".into()), Operation::ReadReports), Scope::Denied);
    }

    #[test]
    fn specialists_only_answer_what_is_addressed_to_them() {
        let sp = Role::Specialist("nephro-1".into());
        for op in ALL {
            let want = if op == Operation::AnswerExpertise { Scope::OwnEntry } else { Scope::Denied };
            assert_eq!(scope(&sp, op), want, "{op:?}");
        }
    }
}
