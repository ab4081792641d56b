//! The face service (`/face_api`) over HTTP with real faces: 128-d dlib
//! embeddings of photos of eleven people (crates/rail/tests/fixtures).
//! One photo of a person is enrolled; other photos and crops of the same
//! person are identified as them; people never enrolled are no match.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::rail::{Key, call, ok, passenger, robot};

/// One face of the fixture.
struct Photo {
    person: String,
    label: String,
    embedding: Vec<f64>,
}

fn photos() -> Vec<Photo> {
    let fixture: Value = serde_json::from_str(include_str!("../../../rail/tests/fixtures/faces.json")).unwrap();
    fixture["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Photo {
            person: f["person"].as_str().unwrap().to_owned(),
            label: format!("{} {} {}", f["person"], f["photo"], f["variant"]),
            embedding: f["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
        })
        .collect()
}

/// People enrolled in the tests; the others (p7–p11) never are.
const ENROLLED: &[&str] = &["p1", "p2", "p3", "p4", "p5", "p6"];

/// Enrols the first photo of each of `people`; their passenger ids.
pub(crate) async fn enrol_people(app: &TestApp, token: &str, people: &[&str]) -> Vec<(String, String)> {
    let photos = photos();
    let mut ids = Vec::new();
    for person in people {
        let user = passenger(app, &app.token, person).await;
        let first = photos.iter().find(|p| p.person == *person).unwrap();
        let body = json!({"user_id": user, "embedding": first.embedding});
        let face = ok(app, "POST", "/face_api/enrol", token, Some(body)).await;
        assert_eq!(face["user_id"], user.as_str());
        ids.push((person.to_string(), user));
    }
    ids
}

async fn identify(app: &TestApp, token: &str, embedding: &[f64]) -> (StatusCode, Value) {
    call(app, "POST", "/face_api/identify", token, Some(json!({"embedding": embedding}))).await
}

#[tokio::test]
async fn another_photo_of_an_enrolled_person_is_them_and_strangers_are_no_match() {
    let app = TestApp::spawn().await;
    let (_, robot_token) = robot(&app, &app.token, &Key::ed25519(41)).await;
    let enrolled = enrol_people(&app, &robot_token, ENROLLED).await;
    let photos = photos();
    let (mut matched, mut refused) = (0, 0);
    for photo in &photos {
        let (status, body) = identify(&app, &robot_token, &photo.embedding).await;
        match enrolled.iter().find(|(person, _)| *person == photo.person) {
            Some((_, user)) => {
                assert_eq!(status, StatusCode::OK, "{}: {body}", photo.label);
                assert_eq!(body["user_id"], user.as_str(), "{}", photo.label);
                assert!(body["distance"].as_f64().unwrap() <= 0.36);
                matched += 1;
            }
            None => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{} is nobody enrolled: {body}", photo.label);
                assert_eq!(body["error"]["code"], "no_match");
                refused += 1;
            }
        }
    }
    // Obama's three distinct photos, and every crop, mirror, darkened and
    // rotated copy of the others.
    assert_eq!((matched, refused), (32, 25));
}

#[tokio::test]
async fn the_threshold_decides_how_near_is_near_enough() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut relayhub_rail::RailConfig| r.face.threshold = 0.05)).await;
    enrol_people(&app, &app.token, &["p1"]).await;
    let photos = photos();
    let same = photos.iter().find(|p| p.person == "p1").unwrap();
    let (status, body) = identify(&app, &app.token, &same.embedding).await;
    assert_eq!(status, StatusCode::OK, "the enrolled embedding itself: {body}");
    assert!(body["distance"].as_f64().unwrap() < 1e-3);
    let scaled: Vec<f64> = same.embedding.iter().map(|x| x * 7.5).collect();
    assert_eq!(identify(&app, &app.token, &scaled).await.0, StatusCode::OK, "vectors are normalised");
    let other_photo = photos.iter().find(|p| p.label.contains("obama2")).unwrap();
    let (status, body) = identify(&app, &app.token, &other_photo.embedding).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_match")),
        "0.05 is too strict"
    );
}

#[tokio::test]
async fn bad_embeddings_are_refused_with_where() {
    let app = TestApp::spawn().await;
    let user = passenger(&app, &app.token, "Anna").await;
    for embedding in [json!([0.1, 0.2]), json!(vec![0.0; 128]), json!(vec![0.1; 512]), json!("face")] {
        let (status, body) =
            call(&app, "POST", "/face_api/enrol", &app.token, Some(json!({"user_id": user, "embedding": embedding})))
                .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "embedding"]));
    }
    let (status, body) = call(
        &app,
        "POST",
        "/face_api/enrol",
        &app.token,
        Some(json!({"user_id": uuid::Uuid::new_v4(), "embedding": vec![0.1; 128]})),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("user_not_found")));
    let staff_shop = crate::rail::store(&app, &app.token, "Buffet").await;
    let staff = ok(&app, "POST", &format!("/store_api/admin/store/{staff_shop}/token"), &app.token, None).await;
    let (status, _) = identify(&app, staff["token"].as_str().unwrap(), &[0.1; 128]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "store staff do not identify passengers");
}

#[tokio::test]
async fn a_forgotten_passenger_is_no_match_and_gone_from_the_disk() {
    let app = TestApp::spawn().await;
    let photos = photos();
    let enrolled = enrol_people(&app, &app.token, &["p1", "p2"]).await;
    let (_, anna) = &enrolled[0];
    for photo in photos.iter().filter(|p| p.person == "p1").skip(1).take(2) {
        let body = json!({"user_id": anna, "embedding": photo.embedding});
        ok(&app, "POST", "/face_api/enrol", &app.token, Some(body)).await;
    }
    let first = &photos[0];
    let stored = stored_bytes(&first.embedding);
    let on_disk = || disk_contains(&app, &stored);
    if app.config.database.is_none() {
        assert!(on_disk(), "the enrolled embedding is in the database files (the check can fail)");
    }

    let forgotten = ok(&app, "DELETE", &format!("/face_api/user/{anna}"), &app.token, None).await;
    assert_eq!(forgotten, json!({"status": "OK", "deleted": 3}));
    let (status, _) = identify(&app, &app.token, &first.embedding).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let boris = photos.iter().find(|p| p.person == "p2").unwrap();
    assert_eq!(identify(&app, &app.token, &boris.embedding).await.0, StatusCode::OK, "others stay");
    if app.config.database.is_none() {
        assert!(!on_disk(), "no byte of the forgotten embedding is left in the database or its log");
    }
    let again = ok(&app, "DELETE", &format!("/face_api/user/{anna}"), &app.token, None).await;
    assert_eq!(again["deleted"], 0);
}

/// The embedding as the store keeps it: unit-normalised little-endian f32s.
/// (The server reads the numbers as f32 first, as a client's JSON floats.)
fn stored_bytes(embedding: &[f64]) -> Vec<u8> {
    let floats: Vec<f64> = embedding.iter().map(|x| f64::from(*x as f32)).collect();
    let norm = floats.iter().map(|x| x * x).sum::<f64>().sqrt();
    floats.iter().flat_map(|x| ((x / norm) as f32).to_le_bytes()).collect()
}

fn disk_contains(app: &TestApp, needle: &[u8]) -> bool {
    std::fs::read_dir(&app.config.data)
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

#[tokio::test]
async fn a_restart_keeps_the_index_and_licenses_see_only_their_faces() {
    let app = TestApp::spawn().await;
    let (b_token, _) = app.create_license("LIC-B", None).await;
    let enrolled = enrol_people(&app, &app.token, &["p3"]).await;
    let photos = photos();
    let hanks = photos.iter().filter(|p| p.person == "p3").nth(2).unwrap();
    let (status, body) = identify(&app, &b_token, &hanks.embedding).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_match")), "another license");
    let (status, _) = call(&app, "DELETE", &format!("/face_api/user/{}", enrolled[0].1), &b_token, None).await;
    assert_eq!(status, StatusCode::OK);

    let app = app.restart().await;
    let (status, body) = identify(&app, &app.token, &hanks.embedding).await;
    assert_eq!(status, StatusCode::OK, "loaded from the store at start-up: {body}");
    assert_eq!(body["user_id"], enrolled[0].1.as_str(), "and another license's forget changed nothing");
}

/// Answers of identify on `app`, asked until `done` says so (the other
/// node learns of changes through PostgreSQL), within the tests' patience.
async fn identify_until(app: &TestApp, embedding: &[f64], done: impl Fn(StatusCode) -> bool) -> (StatusCode, Value) {
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        let answer = identify(app, &app.token, embedding).await;
        if done(answer.0) || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_enrolment_or_forgetting_on_one_node_reaches_the_others() {
    if !crate::cluster::on_postgres() {
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.join().await;
    let enrolled = enrol_people(&a, &a.token, &["p4"]).await;
    let photos = photos();
    let hopper = photos.iter().filter(|p| p.person == "p4").nth(1).unwrap();
    let (status, body) = identify_until(&b, &hopper.embedding, |s| s == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "node b learnt of the enrolment: {body}");
    assert_eq!(body["user_id"], enrolled[0].1.as_str());

    ok(&b, "DELETE", &format!("/face_api/user/{}", enrolled[0].1), &b.token, None).await;
    let (status, _) = identify_until(&a, &hopper.embedding, |s| s == StatusCode::NOT_FOUND).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "node a forgot too");
}
