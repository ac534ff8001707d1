//! The admin REST API over real sockets.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{MAC, TestServer};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn every_api_path_needs_the_token_but_the_openapi_document() {
    let t = TestServer::start().await;
    let base = format!("http://{}", t.server.admin_addr);
    for path in [
        "/api/v1/devices",
        "/api/v1/profiles",
        "/api/v1/site",
        &format!("/api/v1/devices/{MAC}"),
    ] {
        let r = t.http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = t
            .http
            .get(format!("{base}{path}"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let doc: serde_json::Value = t
        .http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    t.assert_metric("polyprov_security_events_total{event=\"admin_bad_token\"} 4")
        .await;
}

#[tokio::test]
async fn devices_profiles_and_site_round_trip() {
    let t = TestServer::start().await;
    let (s, _) = t
        .admin_json(
            Method::PUT,
            &format!("/api/v1/devices/{MAC}"),
            Some(json!({"profile": "nope"})),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = t
        .admin_json(
            Method::PUT,
            "/api/v1/profiles/front-desk",
            Some(json!({"params": {"reg.1.label": "Desk"}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, d) = t
        .admin_json(
            Method::PUT,
            "/api/v1/devices/00-04-F2-AA-81-4C",
            Some(json!({"profile": "front-desk", "admin_password": "pw", "params": {"a.b": "1"}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            d["mac"].as_str(),
            d["state"].as_str(),
            d["profile"].as_str()
        ),
        (Some(MAC), Some("assigned"), Some("front-desk"))
    );
    let (s, list) = t.admin_json(Method::GET, "/api/v1/devices", None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (s, _) = t
        .admin_json(Method::DELETE, "/api/v1/profiles/front-desk", None)
        .await;
    assert_eq!(s, 409);
    let r = t
        .admin(Method::GET, &format!("/api/v1/devices/{MAC}/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("reg.1.label=\"Desk\"") && text.contains("a.b=\"1\""),
        "{text}"
    );
    let (s, site) = t
        .admin_json(
            Method::PUT,
            "/api/v1/site",
            Some(json!({"params": {"x.y": "z"}})),
        )
        .await;
    assert_eq!((s, &site["params"]["x.y"]), (200, &json!("z")));
    let (s, _) = t
        .admin_json(Method::DELETE, &format!("/api/v1/devices/{MAC}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = t
        .admin_json(Method::GET, &format!("/api/v1/devices/{MAC}"), None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = t
        .admin_json(Method::DELETE, "/api/v1/profiles/front-desk", None)
        .await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn malformed_documents_are_refused() {
    let t = TestServer::start().await;
    for (path, body) in [
        (
            format!("/api/v1/devices/{MAC}"),
            json!({"params": {"bad name": "1"}}),
        ),
        (
            format!("/api/v1/devices/{MAC}"),
            json!({"admin_password": ""}),
        ),
        (format!("/api/v1/devices/{MAC}"), json!({"surprise": 1})),
        ("/api/v1/devices/not-a-mac".to_string(), json!({})),
        ("/api/v1/profiles/bad%20name".to_string(), json!({})),
        ("/api/v1/site".to_string(), json!({"params": {"x\"y": "1"}})),
    ] {
        let (s, _) = t.admin_json(Method::PUT, &path, Some(body.clone())).await;
        assert!((400..500).contains(&s), "{path} {body}: {s}");
    }
    let (_, list) = t.admin_json(Method::GET, "/api/v1/devices", None).await;
    assert_eq!(list, json!([]));
}

/// What XML 1.0 cannot carry is refused (422) before it reaches a phone's file: a phone drops
/// a whole malformed file, and every setting in it. What is accepted renders well-formed.
#[tokio::test]
async fn values_xml_cannot_carry_are_refused_and_rendered_files_stay_well_formed() {
    let t = TestServer::start().await;
    for body in [
        json!({"admin_password": "a\"b<c>&d\u{0001}e"}),
        json!({"params": {"reg.1.label": "a\u{0000}b\u{001b}[2J"}}),
        json!({"lines": [{"address": "1001@pbx", "label": "x\u{fffe}"}]}),
    ] {
        let (s, e) = t
            .admin_json(
                Method::PUT,
                &format!("/api/v1/devices/{MAC}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, 422, "{body}: {e}");
    }
    for (path, body) in [
        (
            "/api/v1/site",
            json!({"params": {"reg.1.label": "\u{0007}"}}),
        ),
        (
            "/api/v1/profiles/sales",
            json!({"params": {"reg.1.label": "\u{0008}"}}),
        ),
    ] {
        let (s, e) = t.admin_json(Method::PUT, path, Some(body.clone())).await;
        assert_eq!(s, 422, "{path} {body}: {e}");
    }
    let (_, list) = t.admin_json(Method::GET, "/api/v1/devices", None).await;
    assert_eq!(list, json!([]));
    // Quotes, angle brackets, ampersands, tabs, non-ASCII: accepted, escaped, well-formed.
    let (s, _) = t
        .admin_json(
            Method::PUT,
            &format!("/api/v1/devices/{MAC}"),
            Some(
                json!({"admin_password": "a\"b<c>&d\te", "params": {"reg.1.label": "Zoë ☺ \n x"}}),
            ),
        )
        .await;
    assert_eq!(s, 200);
    let r = t.get(&format!("/{MAC}-polyprov.cfg")).await;
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    polyprov_model::config::check_well_formed(&xml).unwrap();
    let attrs = common::attributes(&xml);
    assert_eq!(attrs["device.auth.localAdminPassword"], "a\"b<c>&d\te");
    assert_eq!(attrs["reg.1.label"], "Zoë ☺ \n x");
}

/// An import: many devices in one request, each with its own login, and the inventory read back
/// page by page.
#[tokio::test]
async fn bulk_assignment_and_paging() {
    let t = TestServer::start().await;
    let devices: Vec<serde_json::Value> = (0..2500)
        .map(|i| serde_json::json!({"mac": format!("0004f2{i:06x}"), "admin_password": format!("pw{i}")}))
        .collect();
    let (s, body) = t
        .admin_json(
            Method::PUT,
            "/api/v1/devices",
            Some(serde_json::json!({ "devices": devices })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["assigned"], 2500);
    // A bad document anywhere refuses the whole request before anything is written.
    let (s, body) = t
        .admin_json(
            Method::PUT,
            "/api/v1/devices",
            Some(serde_json::json!({ "devices": [
                {"mac": "0004f2ffff01", "admin_password": "ok"},
                {"mac": "0004f2ffff02", "params": {"bad name": "x"}}
            ]})),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(
        t.admin_json(Method::GET, "/api/v1/devices/0004f2ffff01", None)
            .await
            .0,
        404
    );
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() {
            "/api/v1/devices?limit=1000".to_string()
        } else {
            format!("/api/v1/devices?limit=1000&after={after}")
        };
        let (s, page) = t.admin_json(Method::GET, &q, None).await;
        assert_eq!(s, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["mac"].as_str().unwrap().to_string();
        seen.extend(
            page.into_iter()
                .map(|d| d["mac"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(seen.len(), 2500);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // Each its own file and login.
    let r = t.get("/0004f2000999-polyprov.cfg").await;
    assert_eq!(r.status(), 200);
    let p = common::attributes(&r.text().await.unwrap());
    assert_eq!(p["device.auth.localAdminPassword"], "pw2457");
    assert_eq!(p["device.prov.user"], "0004f2000999");
}
