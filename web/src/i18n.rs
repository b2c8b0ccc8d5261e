//! Languages of the workspace: French (the default of a French deployment)
//! and English. Each page module owns its texts as a struct of `&'static str`
//! fields with one French and one English constant, so a missing translation
//! does not compile. Texts shared by every page (navigation, buttons, errors)
//! are here ([`Common`]).

/// A supported language: French (default) or English. The same type as the
/// notifications' (`vitalwatch_alerting::Language`), so an account's language
/// and its e-mails agree; `Lang::parse` and `Lang::from_accept_language` are there.
pub use vitalwatch_alerting::Language as Lang;

/// Texts shared by every page.
#[derive(Debug)]
pub struct Common {
    /// Product name shown in the header.
    pub app: &'static str,
    /// Skip link to the main content.
    pub skip: &'static str,
    /// Navigation: worklist.
    pub nav_worklist: &'static str,
    /// Navigation: patients.
    pub nav_patients: &'static str,
    /// Navigation: tele-expertise inbox.
    pub nav_expertise: &'static str,
    /// Navigation: operations (operators).
    pub nav_admin: &'static str,
    /// Navigation: my account.
    pub nav_account: &'static str,
    /// Navigation: the monthly activity report.
    pub nav_reports: &'static str,
    /// Sign out button.
    pub sign_out: &'static str,
    /// Label of the main navigation.
    pub nav_label: &'static str,
    /// Signed in as.
    pub signed_in_as: &'static str,
    /// Role names.
    pub role_operator: &'static str,
    /// Role names.
    pub role_physician: &'static str,
    /// Role names.
    pub role_nurse: &'static str,
    /// Role names.
    pub role_specialist: &'static str,
    /// Severity names.
    pub sev_critical: &'static str,
    /// Severity names.
    pub sev_high: &'static str,
    /// Severity names.
    pub sev_medium: &'static str,
    /// Severity names.
    pub sev_low: &'static str,
    /// Error page title.
    pub error_title: &'static str,
    /// Not found (or not one of your patients).
    pub not_found: &'static str,
    /// Forbidden.
    pub forbidden: &'static str,
    /// The form expired (CSRF token missing or wrong).
    pub form_expired: &'static str,
    /// Something failed on our side.
    pub internal: &'static str,
    /// The database is unavailable.
    pub unavailable: &'static str,
    /// Back to the worklist.
    pub back_home: &'static str,
    /// Save.
    pub save: &'static str,
    /// Cancel.
    pub cancel: &'static str,
}

/// French.
pub const FR: Common = Common {
    app: "vitalwatch",
    skip: "Aller au contenu",
    nav_worklist: "Alertes à traiter",
    nav_patients: "Patients",
    nav_expertise: "Télé-expertise",
    nav_admin: "Administration",
    nav_account: "Mon compte",
    nav_reports: "Activité mensuelle",
    sign_out: "Se déconnecter",
    nav_label: "Navigation principale",
    signed_in_as: "Connecté·e :",
    role_operator: "exploitation",
    role_physician: "médecin",
    role_nurse: "infirmier·e",
    role_specialist: "spécialiste",
    sev_critical: "critique",
    sev_high: "élevée",
    sev_medium: "modérée",
    sev_low: "faible",
    error_title: "Erreur",
    not_found: "Introuvable (ou hors de votre patientèle).",
    forbidden: "Votre rôle ne permet pas cette action.",
    form_expired: "Le formulaire a expiré : rechargez la page et recommencez.",
    internal: "Une erreur interne s'est produite ; elle a été journalisée.",
    unavailable: "La base de données est momentanément indisponible ; réessayez dans un instant.",
    back_home: "Retour aux alertes",
    save: "Enregistrer",
    cancel: "Annuler",
};

/// English.
pub const EN: Common = Common {
    app: "vitalwatch",
    skip: "Skip to content",
    nav_worklist: "Worklist",
    nav_patients: "Patients",
    nav_expertise: "Tele-expertise",
    nav_admin: "Operations",
    nav_account: "My account",
    nav_reports: "Monthly activity",
    sign_out: "Sign out",
    nav_label: "Main navigation",
    signed_in_as: "Signed in:",
    role_operator: "operator",
    role_physician: "physician",
    role_nurse: "nurse",
    role_specialist: "specialist",
    sev_critical: "critical",
    sev_high: "high",
    sev_medium: "medium",
    sev_low: "low",
    error_title: "Error",
    not_found: "Not found (or not one of your patients).",
    forbidden: "Your role does not allow this.",
    form_expired: "The form has expired: reload the page and try again.",
    internal: "Something failed on our side; it has been logged.",
    unavailable: "The database is unavailable for a moment; try again shortly.",
    back_home: "Back to the worklist",
    save: "Save",
    cancel: "Cancel",
};

/// The shared texts of `lang`.
pub fn common(lang: Lang) -> &'static Common {
    match lang {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

impl Common {
    /// The name of a severity (`critical`, `high`, `medium`, `low`).
    pub fn severity(&self, s: &str) -> &'static str {
        match s {
            "critical" => self.sev_critical,
            "high" => self.sev_high,
            "medium" => self.sev_medium,
            _ => self.sev_low,
        }
    }

    /// The name of a role.
    pub fn role(&self, r: &str) -> &'static str {
        match r {
            "operator" => self.role_operator,
            "physician" => self.role_physician,
            "nurse" => self.role_nurse,
            _ => self.role_specialist,
        }
    }
}
