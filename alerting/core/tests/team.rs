//! Care-team validation and serde.

use crate::common;

use common::*;
use vitalwatch_alerting_core::*;

#[test]
fn contact_points_are_validated_with_clear_errors() {
    assert!(EmailAddress::new("dr.martin@chu-lyon.fr").is_ok());
    for (bad, why) in [
        ("martin", "missing '@'"),
        ("martin@localhost", "dot"),
        ("mar tin@x.fr", "spaces"),
        ("@x.fr", "before '@'"),
        ("a@-x.fr", "malformed"),
    ] {
        let e = EmailAddress::new(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert!(PhoneNumber::new("+33612345678").is_ok());
    for (bad, why) in [
        ("0612345678", "start with '+'"),
        ("+33 6 12 34 56 78", "only digits"),
        ("+0612345678", "never starts with 0"),
        ("+1234", "7 to 15"),
        ("+1234567890123456", "7 to 15"),
    ] {
        let e = PhoneNumber::new(bad).unwrap_err().to_string();
        assert!(e.contains(why) && e.contains("E.164"), "{bad}: {e}");
    }
    assert_eq!(TimeZone::new("Europe/Paris").unwrap().name(), "Europe/Paris");
    assert!(TimeZone::new("Mars/Olympus").unwrap_err().to_string().contains("IANA"));
    assert!(PhysicianId::new("dr martin").is_err());
}

#[test]
fn physicians_and_teams_are_checked() {
    let mut p = physician("dr-martin", None);
    p.mobile = None;
    let e = p.validate().unwrap_err();
    assert!(matches!(e, TeamError::MissingMobile { severity: Severity::High, .. }), "{e}");
    p.channels.high = vec![Channel::Email];
    p.channels.critical = vec![Channel::Email];
    p.validate().unwrap();
    p.hourly_cap = Some(0);
    assert!(matches!(p.validate(), Err(TeamError::ZeroCap(_))));

    let dir = directory(vec![physician("dr-martin", None), physician("dr-chen", None)]);
    team().validate(&dir).unwrap();
    let mut bad = team();
    bad.deputies.push(pid("dr-ghost"));
    assert!(bad.validate(&dir).unwrap_err().to_string().contains("dr-ghost"));
    let mut bad = team();
    bad.deputies = vec![pid("dr-martin")];
    assert!(matches!(bad.validate(&dir), Err(TeamError::DuplicateMember { .. })));
    let mut bad = team();
    bad.deputies.clear();
    let e = bad.validate(&dir).unwrap_err().to_string();
    assert!(e.contains("deputy") || e.contains("deputies"), "{e}");
}

#[test]
fn teams_deserialize_from_json_rows() {
    let json = r#"{
        "id": "dr-martin", "name": "Dr Martin", "email": "martin@chu.fr",
        "mobile": "+33612345678", "time_zone": "Europe/Paris",
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "channels": {"low": ["email"], "medium": ["email"], "high": ["email", "sms"], "critical": ["sms", "email"]},
        "hourly_cap": 10
    }"#;
    let p: Physician = serde_json::from_str(json).unwrap();
    p.validate().unwrap();
    assert_eq!(p.channels.channels_for(Severity::Critical), vec![Channel::Email, Channel::Sms]);
    let bad = json.replace("+33612345678", "06 12 34 56 78");
    let e = serde_json::from_str::<Physician>(&bad).unwrap_err().to_string();
    assert!(e.contains("E.164"), "{e}");
    let bad = json.replace("Europe/Paris", "Paris");
    assert!(serde_json::from_str::<Physician>(&bad).unwrap_err().to_string().contains("time zone"));

    let team_json = serde_json::to_string(&team()).unwrap();
    let back: CareTeam = serde_json::from_str(&team_json).unwrap();
    assert_eq!(back, team());
    assert!(team_json.contains("\"kind\":\"all_deputies\""));
}
