//! `/face_api`: enrol a passenger's face embedding, identify a passenger
//! from one, forget a passenger's faces. Robots and the operator call it;
//! a passenger, with their own token, enrols, sees and deletes their own
//! (`/face_api/me`): the person the data is about consents and withdraws.
//! Nothing crosses licenses.

use axum::Json;
use axum::extract::State;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::ids::LicensePk;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Face, normalise};
use crate::Rail;
use crate::api::auth::{Caller, forbidden};
use crate::api::{RailError, RailErrorBody, RailJson, RailPath, RailResult};
use crate::codes;

pub fn routes() -> OpenApiRouter<Rail> {
    OpenApiRouter::new()
        .routes(routes!(enrol))
        .routes(routes!(identify))
        .routes(routes!(forget))
        .routes(routes!(enrol_me, my_faces, forget_me))
}

/// Robots and the operator use the face service.
fn face_caller(caller: &Caller) -> Result<LicensePk, ApiError> {
    match caller {
        Caller::Operator(_) | Caller::Robot { .. } => Ok(caller.license()),
        _ => Err(forbidden("the face service is for robots and the operator")),
    }
}

impl Rail {
    /// A request's embedding, checked and unit-normalised.
    fn embedding(&self, raw: Vec<f32>) -> RailResult<Vec<f32>> {
        let dimension = self.config.face.dimension;
        if raw.len() != dimension {
            return Err(RailError::field(
                "embedding",
                format!("{dimension} numbers (rail.face.dimension), not {}", raw.len()),
            ));
        }
        normalise(raw).ok_or_else(|| RailError::field("embedding", "finite numbers, not all zero"))
    }

    fn index_ready(&self) -> Result<(), ApiError> {
        if self.face_sync.is_ready() {
            return Ok(());
        }
        Err(ApiError::new(ErrorCode::STORAGE_UNAVAILABLE, "the face index is loading; retry shortly").retry_after(1))
    }
}

/// A face to enrol.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EnrolRequest {
    /// The passenger (`/base_api/admin/user`, or one a token created).
    pub user_id: Uuid,
    /// `rail.face.dimension` numbers (128 for dlib's model); any length of
    /// vector, it is normalised.
    #[schema(min_items = 1, max_items = 4096)]
    pub embedding: Vec<f32>,
}

/// Enrols a face of a passenger (several per passenger, up to
/// `rail.face.max_per_user`); durable before the answer. Refused (403)
/// where `rail.face.self_enrol_only` leaves enrolment to passengers.
#[utoipa::path(post, path = "/face_api/enrol", tag = "rail-face", operation_id = "rail_face_enrol",
    security(("bearer" = [])), request_body = EnrolRequest,
    responses((status = 200, body = Face),
        (status = 403, description = "`forbidden`: not a robot or the operator, or rail.face.self_enrol_only is set", body = RailErrorBody),
        (status = 404, description = "`user_not_found`", body = RailErrorBody),
        (status = 409, description = "`face_limit`: the passenger has rail.face.max_per_user faces", body = RailErrorBody)))]
pub async fn enrol(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<EnrolRequest>,
) -> RailResult<Json<Face>> {
    let license = face_caller(&caller)?;
    if rail.config.face.self_enrol_only {
        return Err(forbidden(
            "faces are enrolled by passengers themselves here (POST /face_api/me); rail.face.self_enrol_only",
        )
        .into());
    }
    Ok(Json(rail.enrol_face(license, r.user_id, r.embedding).await?))
}

impl Rail {
    /// Stores a face and waits until this node's index has it, so that
    /// identify finds it at once.
    async fn enrol_face(&self, license: LicensePk, user: Uuid, raw: Vec<f32>) -> RailResult<Face> {
        let embedding = self.embedding(raw)?;
        let face = self.faces.enrol(license, user, embedding, self.config.face.max_per_user, Timestamp::now()).await?;
        self.face_sync.settled().await;
        Ok(face)
    }

    /// Deletes a passenger's faces, on every node's index.
    async fn forget_faces(&self, license: LicensePk, user: Uuid) -> RailResult<Forgotten> {
        let deleted = self.faces.forget(license, user).await?;
        self.face_sync.settled().await;
        Ok(Forgotten { status: "OK", deleted })
    }
}

/// An embedding to identify.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IdentifyRequest {
    #[schema(min_items = 1, max_items = 4096)]
    pub embedding: Vec<f32>,
}

/// Who an embedding is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Identified {
    pub user_id: Uuid,
    /// Euclidean distance between the unit vectors, at most
    /// `rail.face.threshold`.
    pub distance: f32,
}

/// The passenger whose enrolled face is nearest, within the threshold.
#[utoipa::path(post, path = "/face_api/identify", tag = "rail-face", operation_id = "rail_face_identify",
    security(("bearer" = [])), request_body = IdentifyRequest,
    responses((status = 200, body = Identified),
        (status = 404, description = "`no_match`: no enrolled face within rail.face.threshold", body = RailErrorBody)))]
pub async fn identify(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<IdentifyRequest>,
) -> RailResult<Json<Identified>> {
    let license = face_caller(&caller)?;
    let embedding = rail.embedding(r.embedding)?;
    rail.index_ready()?;
    let nearest = rail.face_index.nearest(license, &embedding).map_err(|e| ApiError::new(ErrorCode::INTERNAL, e))?;
    match nearest {
        Some(found) if found.distance <= rail.config.face.threshold => {
            Ok(Json(Identified { user_id: found.user_id, distance: found.distance }))
        }
        _ => Err(ApiError::new(codes::NO_MATCH, "no enrolled face is near enough").into()),
    }
}

/// A passenger forgotten.
#[derive(Debug, Serialize, ToSchema)]
pub struct Forgotten {
    #[schema(example = "OK")]
    pub status: &'static str,
    /// Faces deleted.
    pub deleted: u64,
}

/// Deletes every face of a passenger (the right to be forgotten), on
/// every node's index.
#[utoipa::path(delete, path = "/face_api/user/{user_id}", tag = "rail-face", operation_id = "rail_face_forget",
    security(("bearer" = [])), params(("user_id" = Uuid, Path)),
    responses((status = 200, body = Forgotten)))]
pub async fn forget(
    State(rail): State<Rail>,
    caller: Caller,
    RailPath(user): RailPath<Uuid>,
) -> RailResult<Json<Forgotten>> {
    let license = face_caller(&caller)?;
    Ok(Json(rail.forget_faces(license, user).await?))
}

/// A face the signed-in passenger enrols of themselves.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MyFaceRequest {
    /// `rail.face.dimension` numbers (128 for dlib's model); normalised.
    #[schema(min_items = 1, max_items = 4096)]
    pub embedding: Vec<f32>,
}

/// Enrols a face of the signed-in passenger (their OpenID Connect token):
/// their consent, given by themselves.
#[utoipa::path(post, path = "/face_api/me", tag = "rail-face", operation_id = "rail_face_enrol_me",
    security(("bearer" = [])), request_body = MyFaceRequest,
    responses((status = 200, body = Face),
        (status = 403, description = "`forbidden`: not a passenger's token", body = RailErrorBody),
        (status = 409, description = "`face_limit`: rail.face.max_per_user faces are enrolled", body = RailErrorBody)))]
pub async fn enrol_me(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<MyFaceRequest>,
) -> RailResult<Json<Face>> {
    let (license, user) = caller.passenger()?;
    Ok(Json(rail.enrol_face(license, user.id, r.embedding).await?))
}

/// The faces enrolled of a passenger (never their embeddings).
#[derive(Debug, Serialize, ToSchema)]
pub struct MyFaces {
    /// Whether any face is enrolled.
    pub enrolled: bool,
    /// Oldest first.
    pub faces: Vec<Face>,
}

/// Whether the signed-in passenger has a face enrolled, and which.
#[utoipa::path(get, path = "/face_api/me", tag = "rail-face", operation_id = "rail_face_me",
    security(("bearer" = [])),
    responses((status = 200, body = MyFaces),
        (status = 403, description = "`forbidden`: not a passenger's token", body = RailErrorBody)))]
pub async fn my_faces(State(rail): State<Rail>, caller: Caller) -> RailResult<Json<MyFaces>> {
    let (license, user) = caller.passenger()?;
    let faces = rail.faces.faces_of(license, user.id).await?;
    Ok(Json(MyFaces { enrolled: !faces.is_empty(), faces }))
}

/// Deletes every face of the signed-in passenger, on every node: their
/// consent withdrawn, by themselves.
#[utoipa::path(delete, path = "/face_api/me", tag = "rail-face", operation_id = "rail_face_forget_me",
    security(("bearer" = [])),
    responses((status = 200, body = Forgotten),
        (status = 403, description = "`forbidden`: not a passenger's token", body = RailErrorBody)))]
pub async fn forget_me(State(rail): State<Rail>, caller: Caller) -> RailResult<Json<Forgotten>> {
    let (license, user) = caller.passenger()?;
    Ok(Json(rail.forget_faces(license, user.id).await?))
}
