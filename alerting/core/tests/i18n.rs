//! Languages (issue #16): the French and English renderings of the alert
//! email, the digest, the SMS and the chart texts; the catalogues; the
//! physician's language in the directory document; the French SMS commands.

use crate::common;

use common::*;
use vitalwatch_alerting_core::i18n::{self, placeholders};
use vitalwatch_alerting_core::render::chart::{CHART_EN, CHART_FR, ChartData, ChartText, render_chart_png};
use vitalwatch_alerting_core::render::email::{
    AlertEmailInput, EMAIL_EN, EMAIL_FR, EmailText, RenderedEmail, render_alert_email, render_digest_email,
};
use vitalwatch_alerting_core::render::sms::{SEGMENT_LEN, SMS_EN, SMS_FR, SmsText, is_gsm7, render_sms};
use vitalwatch_alerting_core::render::{FOOTER_EN, FOOTER_FR};
use vitalwatch_alerting_core::*;
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind, EvidenceReading};

/// A CRITICAL body temperature of 38.5 °C (threshold 38 °C, baseline 36.8 °C)
/// measured at 12:05 UTC on 7 December 2026 (13:05 in Paris, 08:05 in Martinique).
fn fever(patient: &str) -> AlertEvent {
    let t0 = t("2026-12-07T12:06:00Z");
    let mut e = event("e-f", AlertEventKind::Opened, Severity::Critical, t0);
    e.patient_id = patient.into();
    e.rule_id = "threshold.temperature.high".into();
    e.code = "8310-5".into();
    e.reading_time_unix_micros = t("2026-12-07T12:05:00Z").timestamp_micros();
    e.received_at_unix_micros = t("2026-12-07T12:05:30Z").timestamp_micros();
    e.readings = vec![EvidenceReading {
        observation_id: "obs-f".into(),
        code: "8310-5".into(),
        value: 38.5,
        unit: "Cel".into(),
        time_unix_micros: e.reading_time_unix_micros,
    }];
    e.threshold = Some(38.0);
    e.baseline = Some(36.8);
    // The rules engine's free text is not translated (tested without it).
    e.summary = String::new();
    e
}

/// `physician` reading `lang` in time zone `tz`.
fn reader(lang: Option<Language>, tz: &str) -> Physician {
    let mut p = physician("dr-martin", None);
    p.language = lang;
    p.time_zone = TimeZone::new(tz).unwrap();
    p
}

fn plan_for(e: &AlertEvent, p: &Physician) -> (EpisodeState, Plan) {
    let t0 = t("2026-12-07T12:06:00Z");
    let (ep, _) = EpisodeState::from_event(e, t0).unwrap();
    let dir = directory(vec![p.clone(), physician("dr-chen", None)]);
    let mut team = team();
    team.patient_id = vitalwatch_schemas::PatientId::new(e.patient_id.clone()).unwrap();
    (ep.clone(), plan_now(&ep, &team, &dir, t0))
}

fn email(e: &AlertEvent, p: &Physician, lang: Language, step: Option<Step>) -> RenderedEmail {
    let (ep, plan) = plan_for(e, p);
    let mut n = plan.notifications.iter().find(|n| n.channel == Channel::Email).unwrap().clone();
    if let Some(s) = step {
        n.step = s;
    }
    let code = AckCodeGenerator::new(SECRET, 8).unwrap().candidate(&ep.episode_id, &p.id, 0);
    render_alert_email(&AlertEmailInput {
        notification: &n,
        episode: &ep,
        recipient: p,
        language: lang,
        ack_link: Some("https://vw.example/ack?t=tok"),
        ack_code: Some(&code),
        history: &history(t("2026-12-07T12:05:00Z")),
        id_domain: "vw.example",
    })
    .unwrap()
}

#[test]
fn french_alert_email_is_wholly_french_with_decimal_comma_and_local_time() {
    let martin = reader(Some(Language::Fr), "Europe/Paris");
    let r = email(&fever("pt-0042"), &martin, Language::Fr, None);
    assert_eq!(r.subject, "[vitalwatch] CRITIQUE - température 38,5 °C - patient pt-0042");
    for want in [
        "Bonjour Dr dr-martin,\n\nUne nouvelle alerte demande votre attention.\n",
        "Patient (identifiant pseudonyme) : pt-0042\n",
        "Sévérité : CRITIQUE\n",
        "Paramètre : température (LOINC 8310-5)\n",
        "Valeur : 38,5 °C\n",
        "Mesure : actuelle\n",
        "Date de mesure : 07/12/2026 à 13:05 (Europe/Paris)\n",
        "Date de réception : 07/12/2026 à 13:05 (Europe/Paris)\n",
        "Seuil franchi : 38 °C\n",
        "Valeur de référence : 36,8 °C\n",
        "La version HTML de ce message montre les 14 derniers jours de ce paramètre.",
        "Acquitter : https://vw.example/ack?t=tok\nOu répondez « OK ",
        FOOTER_FR,
    ] {
        assert!(r.text.contains(want), "missing {want:?} in:\n{}", r.text);
    }
    for english in ["Dear", "Acknowledge", "Measured", "Value", "Threshold", "reply", FOOTER_EN, "38.5"] {
        assert!(!r.text.contains(english) && !r.html.contains(english), "{english:?} in the French email:\n{}", r.text);
    }
    assert!(r.html.starts_with("<!DOCTYPE html><html lang=\"fr\">"), "{}", r.html);
    assert!(!r.html.contains("lang=\"en\""));
    assert!(r.html.contains(">Acquitter</a>"), "{}", r.html);
    assert!(r.html.contains("Ou répondez <strong>OK "), "{}", r.html);
    assert!(r.html.contains("alt=\"température sur les 14 derniers jours\""), "{}", r.html);
    assert!(r.chart_png.as_ref().is_some_and(|p| p.starts_with(b"\x89PNG")));
}

#[test]
fn english_alert_email_is_wholly_english_with_decimal_point() {
    let martin = reader(Some(Language::En), "Europe/Paris");
    let r = email(&fever("pt-0042"), &martin, Language::En, None);
    assert_eq!(r.subject, "[vitalwatch] CRITICAL - body temperature 38.5 °C - patient pt-0042");
    for want in [
        "Dear Dr dr-martin,\n\nA new alert needs your attention.\n",
        "Value: 38.5 °C\n",
        "Baseline: 36.8 °C\n",
        "Measured at: Mon 07 Dec 2026 13:05 CET (Europe/Paris)\n",
        "Acknowledge: https://vw.example/ack?t=tok\nOr reply \"ACK ",
        FOOTER_EN,
    ] {
        assert!(r.text.contains(want), "missing {want:?} in:\n{}", r.text);
    }
    assert!(!r.text.contains(FOOTER_FR) && !r.html.contains(FOOTER_FR), "no French footer in English");
    assert!(!r.text.contains("38,5"));
    assert!(r.html.starts_with("<!DOCTYPE html><html lang=\"en\">"), "{}", r.html);
    assert!(!r.html.contains("lang=\"fr\""));
}

#[test]
fn times_are_in_the_recipients_time_zone() {
    // Martinique: UTC-4; Paris in December: UTC+1.
    let antilles = reader(Some(Language::Fr), "America/Martinique");
    let r = email(&fever("pt-0042"), &antilles, Language::Fr, None);
    assert!(r.text.contains("Date de mesure : 07/12/2026 à 08:05 (America/Martinique)\n"), "{}", r.text);
    // Just after midnight UTC is still the previous day in Martinique.
    let mut late = fever("pt-0042");
    late.reading_time_unix_micros = t("2026-12-08T01:30:00Z").timestamp_micros();
    late.readings[0].time_unix_micros = late.reading_time_unix_micros;
    late.detected_at_unix_micros = t("2026-12-08T01:31:00Z").timestamp_micros();
    late.received_at_unix_micros = late.detected_at_unix_micros;
    let (ep, plan) = plan_for(&late, &antilles);
    let n = plan.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap();
    let code = AckCodeGenerator::new(SECRET, 8).unwrap().candidate(&ep.episode_id, &antilles.id, 0);
    let sms = render_sms(n, &ep, &antilles, Language::Fr, Some(&code), t("2026-12-08T01:31:00Z")).unwrap();
    assert!(sms.contains("mesurée le 07/12 21:30"), "{sms}");
}

#[test]
fn historical_and_technical_emails_in_french() {
    let martin = reader(Some(Language::Fr), "Europe/Paris");
    let mut e = fever("pt-0042");
    e.historical = true;
    e.reading_time_unix_micros = t("2026-12-06T22:00:00Z").timestamp_micros();
    e.readings[0].time_unix_micros = e.reading_time_unix_micros;
    let r = email(&e, &martin, Language::Fr, None);
    assert!(r.subject.starts_with("[vitalwatch] CRITIQUE - mesure HISTORIQUE - température 38,5 °C"), "{}", r.subject);
    assert!(
        r.text.contains("Une mesure HISTORIQUE demande votre attention : elle a été prise le 06/12/2026 à 23:00 (Europe/Paris) et reçue le 07/12/2026 à 13:05 (Europe/Paris)."),
        "{}",
        r.text
    );
    assert!(r.text.contains("reçue 14 h 5 min plus tard"), "{}", r.text);
    let r = email(
        &fever("pt-0042"),
        &martin,
        Language::Fr,
        Some(Step::Reminder { severity: Severity::Critical, number: 2 }),
    );
    assert!(r.subject.starts_with("[vitalwatch] RAPPEL CRITIQUE - "), "{}", r.subject);
    assert!(r.text.contains("Rappel 2 : cette alerte n'est toujours pas acquittée."), "{}", r.text);
    let r = email(&fever("pt-0042"), &martin, Language::Fr, Some(Step::Resolved));
    assert!(r.subject.starts_with("[vitalwatch] RÉSOLUE - "), "{}", r.subject);
    assert!(!r.text.contains("Acquitter"), "no acknowledgment on the all-clear: {}", r.text);
}

#[test]
fn french_digest() {
    let martin = reader(Some(Language::Fr), "Europe/Paris");
    let e = fever("pt-0042");
    let (ep, plan) = plan_for(&e, &martin);
    let n = plan.notifications.iter().find(|n| n.channel == Channel::Email).unwrap();
    let entry = DigestEntry {
        key: n.key.clone(),
        episode_id: ep.episode_id.clone(),
        patient_id: ep.patient_id.clone(),
        recipient: martin.id.clone(),
        step: n.step,
        severity: Severity::Low,
        code: ep.details.code,
        value: Some(37.9),
        unit: "Cel".into(),
        reading_time: ep.details.reading_time,
        summary: String::new(),
        at: ep.opened_at,
    };
    let lines = vec![
        DigestLine {
            entry: entry.clone(),
            status: DigestItemStatus::Open,
            ack_link: Some("https://vw.example/ack?t=d1".into()),
        },
        DigestLine {
            entry,
            status: DigestItemStatus::Acknowledged { by: martin.id.clone(), at: t("2026-12-07T13:00:00Z") },
            ack_link: None,
        },
    ];
    let d = render_digest_email(&martin, Language::Fr, &lines, "digest:dr-martin:20261207T1300", "vw.example");
    assert_eq!(d.subject, "[vitalwatch] Récapitulatif - 2 alerte(s), 1 ouverte(s)");
    for want in [
        "Bonjour Dr dr-martin,",
        "Ouvertes :\n- FAIBLE - patient pt-0042 - température 37,9 °C - mesurée le 07/12/2026 à 13:05 (Europe/Paris)\n  Acquitter : https://vw.example/ack?t=d1\n",
        " - acquittée par dr-martin le 07/12/2026 à 14:00\n",
        FOOTER_FR,
    ] {
        assert!(d.text.contains(want), "missing {want:?} in:\n{}", d.text);
    }
    assert!(!d.text.contains(FOOTER_EN) && !d.text.contains("Acknowledge"));
    assert!(d.html.contains("<html lang=\"fr\">") && d.html.contains(">Acquitter</a>"), "{}", d.html);
    let en = render_digest_email(&martin, Language::En, &lines, "digest:dr-martin:20261207T1300", "vw.example");
    assert_eq!(en.subject, "[vitalwatch] Digest - 2 alert(s), 1 open");
    assert!(en.text.contains("LOW - patient pt-0042 - body temperature 37.9 °C - measured Mon 07 Dec 2026 13:05 CET"));
    assert!(en.html.contains("<html lang=\"en\">"));
    assert_eq!(d.message_id, en.message_id, "the Message-ID does not depend on the language");
}

#[test]
fn french_sms_exact_text_and_decimal_comma() {
    let martin = reader(Some(Language::Fr), "Europe/Paris");
    let (ep, plan) = plan_for(&fever("pt-0042"), &martin);
    let n = plan.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap();
    let code = AckCodeGenerator::new(SECRET, 8).unwrap().candidate(&ep.episode_id, &martin.id, 0);
    let now = t("2026-12-07T12:06:00Z");
    let body = render_sms(n, &ep, &martin, Language::Fr, Some(&code), now).unwrap();
    assert_eq!(
        body,
        format!(
            "vitalwatch CRITIQUE : patient pt-0042, température 38,5C (seuil 38) mesurée le 07/12 13:05 (actuelle). Répondez OK {code}"
        )
    );
    assert!(body.chars().count() <= SEGMENT_LEN && body.chars().all(is_gsm7) && !body.contains('?'), "{body}");
    // What the SMS asks for is what the parser accepts.
    assert_eq!(parse_sms_reply(&format!("OK {code}")), Ok(SmsCommand::Ack { code: code.clone() }));
    let en = render_sms(n, &ep, &reader(Some(Language::En), "Europe/Paris"), Language::En, Some(&code), now).unwrap();
    assert_eq!(
        en,
        format!(
            "vitalwatch CRITICAL: patient pt-0042, body temperature 38.5C (limit 38) measured 07/12 13:05 (current). Reply ACK {code}"
        )
    );
}

/// Every step, both languages, the longest vital names, a 64-character
/// patient id, a 10-digit code, historical or not: one GSM-7 segment, the
/// mandatory parts kept, no character replaced.
#[test]
fn sms_fit_one_segment_in_both_languages() {
    let long = "p".repeat(64);
    let now = t("2026-12-07T12:06:00Z");
    let steps = [
        Step::Page { severity: Severity::Critical, index: 0 },
        Step::Page { severity: Severity::Critical, index: 1 },
        Step::Reminder { severity: Severity::Critical, number: 3 },
        Step::Resolved,
    ];
    for lang in Language::ALL {
        let p = reader(Some(lang), "Pacific/Chatham");
        for loinc in ["8462-4", "8867-4", "9279-1", "59408-5"] {
            for historical in [false, true] {
                for technical in [false, true] {
                    let mut e = fever(&long);
                    e.readings[0].code = loinc.into();
                    e.code = loinc.into();
                    e.historical = historical;
                    if technical {
                        e.rule_id = "technical.device_silent".into();
                        e.rule_kind = "device_heartbeat_lost".into();
                        e.code = String::new();
                        e.readings.clear();
                        e.threshold = None;
                        e.baseline = None;
                    }
                    let (ep, _) = EpisodeState::from_event(&e, now).unwrap();
                    let (_, plan) = plan_for(&fever("pt-0042"), &p);
                    let base = plan.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap().clone();
                    let code = AckCodeGenerator::new(SECRET, 10).unwrap().candidate(&ep.episode_id, &p.id, 0);
                    for step in steps {
                        let n = Notification { step, ..base.clone() };
                        let body = render_sms(&n, &ep, &p, lang, Some(&code), now).unwrap();
                        let what = format!("{lang} {loinc} historical={historical} technical={technical} {step}");
                        assert!(body.chars().count() <= SEGMENT_LEN, "{what}: {} chars: {body}", body.chars().count());
                        assert!(body.chars().all(is_gsm7) && !body.contains('?'), "{what}: {body}");
                        assert!(body.contains(&long), "{what}: {body}");
                        if step == Step::Resolved {
                            assert!(!body.contains(code.as_str()), "{what}: {body}");
                        } else {
                            let reply = if lang == Language::Fr { "OK" } else { "ACK" };
                            assert!(body.ends_with(&format!("{reply} {code}")), "{what}: {body}");
                        }
                        if historical && step != Step::Resolved && !technical {
                            let word = if lang == Language::Fr { "HISTORIQUE" } else { "HISTORICAL" };
                            assert!(body.contains(word), "{what}: {body}");
                        }
                    }
                }
            }
        }
    }
}

/// Both languages of every template take the same arguments; the SMS texts
/// are GSM-7 once filled.
#[test]
fn catalogues_agree_on_arguments() {
    type Templates = Vec<(&'static str, &'static str)>;
    let pairs: Vec<(Templates, Templates)> = vec![
        (EMAIL_FR.templates(), EMAIL_EN.templates()),
        (SMS_FR.templates(), SMS_EN.templates()),
        (CHART_FR.templates(), CHART_EN.templates()),
    ];
    for (fr, en) in pairs {
        assert_eq!(fr.len(), en.len());
        for ((name, f), (name_en, e)) in fr.iter().zip(en.iter()) {
            assert_eq!(name, name_en);
            assert_eq!(placeholders(f), placeholders(e), "{name}: {f:?} vs {e:?}");
            assert!(!f.is_empty() || e.is_empty(), "{name} is empty in French");
        }
    }
    for (name, s) in SMS_FR.templates().into_iter().chain(SMS_EN.templates()) {
        let args: Vec<(&str, &str)> = placeholders(s).into_iter().map(|a| (a, "x")).collect();
        let filled = i18n::fill(s, &args);
        assert!(filled.chars().all(is_gsm7), "{name}: {filled:?} is not GSM-7");
    }
    assert_eq!(EmailText::of(Language::Fr).greeting, EMAIL_FR.greeting);
    assert_eq!(SmsText::of(Language::En).tail, SMS_EN.tail);
    assert_eq!(ChartText::of(Language::Fr).caption, CHART_FR.caption);
}

#[test]
fn chart_texts_follow_the_language() {
    let data = ChartData {
        title: i18n::vital(Language::Fr, vitalwatch_schemas::Code::BodyTemperature).into(),
        unit: "Cel".into(),
        points: vec![(t("2026-12-07T12:05:00Z"), 38.5)],
        threshold: Some(38.0),
        baseline: Some(36.8),
        highlight: None,
        end: t("2026-12-07T12:06:00Z"),
        days: 14,
    };
    assert_eq!(ChartText::of(Language::Fr).caption_of(&data), "température (°C), 14 derniers jours");
    assert_eq!(ChartText::of(Language::En).caption_of(&data), "température (°C), last 14 days");
    let fr = render_chart_png(&data, chrono_tz::Europe::Paris, Language::Fr).unwrap();
    let en = render_chart_png(&data, chrono_tz::Europe::Paris, Language::En).unwrap();
    assert!(fr.starts_with(b"\x89PNG") && en.starts_with(b"\x89PNG"));
    assert_ne!(fr, en, "captions, legends and y labels differ");
}

#[test]
fn the_physician_document_carries_a_validated_language() {
    let mut p = reader(Some(Language::Fr), "Europe/Paris");
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["language"], "fr");
    let back: Physician = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back.language, Some(Language::Fr));
    let mut bad = json.clone();
    bad["language"] = "de".into();
    let err = serde_json::from_value::<Physician>(bad).unwrap_err().to_string();
    assert!(err.contains("unknown language \"de\": expected \"fr\" (French) or \"en\" (English)"), "{err}");
    // Absent: `None`, and the deployment default applies.
    p.language = None;
    let json = serde_json::to_value(&p).unwrap();
    assert!(json.get("language").is_none(), "{json}");
    let back: Physician = serde_json::from_value(json).unwrap();
    assert_eq!(back.language, None);
    assert_eq!(back.language_or(Language::En), Language::En);
    assert_eq!(reader(Some(Language::Fr), "UTC").language_or(Language::En), Language::Fr);
}

#[test]
fn french_sms_commands_are_accepted_next_to_the_english_ones() {
    let c = |s: &str| AckCodeGenerator::new(SECRET, 6).unwrap().candidate(&EpisodeId::new(s).unwrap(), &pid("x"), 0);
    let code = c("ep-1");
    let ack = Ok(SmsCommand::Ack { code: code.clone() });
    for reply in ["ACK {c}", "ok {c}", "Ok: {c}", "OK{c}", "acq {c}", "ACQ {c}."] {
        assert_eq!(parse_sms_reply(&reply.replace("{c}", code.as_str())), ack, "{reply}");
    }
    let snooze = Ok(SmsCommand::Snooze { code: code.clone(), minutes: 30 });
    for reply in ["SNOOZE {c} 30", "pause {c} 30", "Report {c} 30", "REPORTER {c} 30", "PAUSE{c} 30"] {
        assert_eq!(parse_sms_reply(&reply.replace("{c}", code.as_str())), snooze, "{reply}");
    }
    for bad in ["OKAY {c}", "OK", "PAUSE {c}", "PAUSE {c} 0", "OUI {c}", "OK {c} merci"] {
        assert!(parse_sms_reply(&bad.replace("{c}", code.as_str())).is_err(), "{bad}");
    }
}
