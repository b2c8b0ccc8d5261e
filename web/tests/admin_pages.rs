//! The operators' pages and role scoping, on both engines: an operator sets
//! up a physician, a nurse, a patient with its care team and a device through
//! the forms; the changes land in the stores and the audit trail (with the
//! client address); the nurse then sees the patient, a physician does not see
//! the operators' pages, and nobody sees a patient outside their care teams.

use crate::support::{App, Engine, ops};

#[tokio::test]
async fn operators_set_up_the_care_team_through_the_forms_and_roles_scope_what_each_sees() {
    let mut apps = vec![App::start(Engine::Sqlite).await.expect("sqlite")];
    if let Some(pg) = App::start(Engine::Postgres).await {
        apps.push(pg);
    }
    for app in apps {
        let e = app.engine;
        let pw = app.account("ops", "operator", None, "en").await;
        let mut op = app.sign_in("ops", &pw).await;

        // A physician in the directory, then accounts for them and for a nurse.
        assert_eq!(op.get("/admin/physicians").await.status, 200);
        let r = op
            .post(
                "/admin/physicians",
                &[("id", "dr-x"), ("name", "Dr X"), ("email", "x@example.invalid"), ("time_zone", "Europe/Paris")],
            )
            .await;
        assert_eq!(r.status, 303, "{e:?}: {}", r.body);
        for (id, role, phys) in [("dr-x", "physician", "dr-x"), ("ide-y", "nurse", ""), ("dr-z", "physician", "")] {
            op.get("/admin/users").await;
            let r = op
                .post(
                    "/admin/users",
                    &[
                        ("id", id),
                        ("display_name", id),
                        ("role", role),
                        ("physician_id", phys),
                        ("language", "fr"),
                        ("time_zone", "Europe/Paris"),
                        ("password", "a-long-enough-password"),
                    ],
                )
                .await;
            if id == "dr-z" {
                // A physician account must name a directory entry: refused with the reason.
                assert_eq!(r.status, 422, "{e:?}");
                assert!(r.body.contains("directory id"), "{}", r.body);
            } else {
                assert_eq!(r.status, 303, "{e:?} {id}: {}", r.body);
            }
        }
        let users = op.get("/admin/users").await.body;
        assert!(users.contains("ide-y") && users.contains("dr-x") && !users.contains(">dr-z<"), "{e:?}");

        // A patient, its care team (responsible + nurse), a device enrolled to it.
        op.get("/admin/patients").await;
        assert_eq!(op.post("/admin/patients", &[("id", "pat-1")]).await.status, 303, "{e:?}");
        app.physician("dr-w").await;
        op.get("/admin/patients/pat-1").await;
        let r = op
            .post("/admin/patients/pat-1", &[("responsible", "dr-x"), ("deputies", "dr-w"), ("nurses", "ide-y")])
            .await;
        assert_eq!(r.status, 303, "{e:?}: {}", r.body);
        let page = op.get("/admin/patients/pat-1?saved=1").await.body;
        assert!(page.contains("value=\"dr-x\"") && page.contains("value=\"ide-y\""), "{e:?}");
        op.get("/admin/devices").await;
        assert_eq!(op.post("/admin/devices", &[("id", "cuff-1"), ("kind", "bp_cuff")]).await.status, 303);
        assert_eq!(op.post("/admin/devices/cuff-1/enrol", &[("patient", "pat-1")]).await.status, 303, "{e:?}");
        assert!(op.get("/admin/devices").await.body.contains("href=\"/admin/patients/pat-1\""), "{e:?}");
        // A nurse id that is not a nurse account is refused.
        let r = op
            .post("/admin/patients/pat-1", &[("responsible", "dr-x"), ("deputies", "dr-w"), ("nurses", "dr-x")])
            .await;
        assert_eq!(r.status, 422, "{e:?}");

        // Every change is in the audit trail with the operator and where they were.
        let q = vitalwatch_admin::model::AuditQuery { actor: Some("user:ops".into()), ..Default::default() };
        let audit = app.admin.audit(&ops(), &q).await.unwrap().items;
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        for want in ["physician.upsert", "user.create", "patient.add", "care_team.set", "device.add", "device.enrol"] {
            assert!(actions.iter().any(|a| *a == want || a.starts_with(want)), "{e:?}: {want} not in {actions:?}");
        }
        assert!(
            audit.iter().all(|a| a.details.get("origin").and_then(|o| o.as_str()) == Some("web 127.0.0.1")),
            "{e:?}: {audit:?}"
        );

        // The nurse sees the patient; the physician too; another physician does not.
        let mut nurse = app.sign_in("ide-y", "a-long-enough-password").await;
        assert!(nurse.get("/patients").await.body.contains("href=\"/patients/pat-1\""), "{e:?}");
        assert_eq!(nurse.get("/admin/users").await.status, 403, "{e:?}: operators only");
        app.physician("dr-other").await;
        let pw2 = app.account("dr-other", "physician", Some("dr-other"), "en").await;
        let mut other = app.sign_in("dr-other", &pw2).await;
        let list = other.get("/patients").await;
        assert!(!list.body.contains("pat-1"), "{e:?}: not in their care teams");
        // Changing the URL reveals nothing: the same 404 as for an unknown patient.
        assert_eq!(other.get("/admin/patients/pat-1").await.status, 404, "{e:?}");
        assert_eq!(other.get("/admin/patients/no-such").await.status, 404, "{e:?}");
        assert_eq!(other.get("/admin/users").await.status, 403, "{e:?}");
    }
}
