//! A user's robots: seen by their owner and by the license's admins;
//! anyone else is told they do not exist.

use axum::extract::State;
use axum::http::StatusCode;
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::http::{Json, Path};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Fleet;
use crate::auth::{RobotAuth, UserAuth};
use crate::model::{Robot, RobotPatch, RobotView};
use crate::rules::{listing, may_see, settable_status};

/// Robots a user may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotList {
    pub robots: Vec<RobotView>,
}

fn not_found(id: i64) -> ApiError {
    ApiError::new(ErrorCode::ROBOT_NOT_FOUND, format!("no robot {id} of yours"))
}

impl Fleet {
    /// The robot, if `auth` may see it.
    pub async fn visible_robot(&self, auth: &UserAuth, id: i64) -> Result<Robot, ApiError> {
        let robot = self.robots.robot(auth.license.pk, id).await?;
        robot.filter(|r| may_see(&auth.user, r)).ok_or_else(|| not_found(id))
    }
}

/// The user's robots; for an admin, every robot of the license.
#[utoipa::path(
    get,
    path = "/api/robots",
    operation_id = "list_robots",
    tag = "robots",
    responses((status = 200, description = "Robots, by id", body = RobotList)),
    security(("user" = []))
)]
pub async fn list(State(fleet): State<Fleet>, auth: UserAuth) -> Result<Json<RobotList>, ApiError> {
    let (license, owner) = listing(&auth.user);
    let robots = fleet.robots.robots(license, owner).await?;
    Ok(Json(RobotList { robots: robots.iter().map(Robot::view).collect() }))
}

/// One robot.
#[utoipa::path(
    get,
    path = "/api/robots/{id}",
    operation_id = "get_robot",
    tag = "robots",
    params(("id" = i64, Path, description = "The robot's id", minimum = 1)),
    responses(
        (status = 200, description = "The robot", body = RobotView),
        (status = 404, description = "No such robot of this user", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn get(State(fleet): State<Fleet>, auth: UserAuth, Path(id): Path<i64>) -> Result<Json<RobotView>, ApiError> {
    Ok(Json(fleet.visible_robot(&auth, id).await?.view()))
}

/// Renames a robot, or sets it `active` or `inactive`: an inactive robot's
/// token stops working at once, on every node.
#[utoipa::path(
    patch,
    path = "/api/robots/{id}",
    operation_id = "update_robot",
    tag = "robots",
    params(("id" = i64, Path, description = "The robot's id", minimum = 1)),
    request_body = RobotPatch,
    responses(
        (status = 200, description = "The robot as it is now", body = RobotView),
        (status = 404, description = "No such robot of this user", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn update(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    Path(id): Path<i64>,
    Json(mut patch): Json<RobotPatch>,
) -> Result<Json<RobotView>, ApiError> {
    fleet.visible_robot(&auth, id).await?;
    if let Some(name) = &patch.name {
        // ASCII blanks only: the document's minLength counts every other
        // character, as JSON Schema does.
        let name = name.trim_matches(|c: char| c.is_ascii_whitespace());
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::invalid_field("name: 1-200 characters"));
        }
        patch.name = Some(name.to_owned());
    }
    patch.status = patch.status.map(settable_status).transpose()?;
    let robot = fleet.robots.update_robot(auth.license.pk, id, patch).await?;
    Ok(Json(robot.view()))
}

/// Deletes a robot: its token stops working at once, on every node.
#[utoipa::path(
    delete,
    path = "/api/robots/{id}",
    operation_id = "delete_robot",
    tag = "robots",
    params(("id" = i64, Path, description = "The robot's id", minimum = 1)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such robot of this user", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn delete(State(fleet): State<Fleet>, auth: UserAuth, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    fleet.visible_robot(&auth, id).await?;
    fleet.robots.delete_robot(auth.license.pk, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling robot, by its own token: a robot checks that its token
/// works (an inactive or deleted robot's does not).
#[utoipa::path(
    get,
    path = "/api/robot",
    operation_id = "get_own_robot",
    tag = "robots",
    responses((status = 200, description = "The robot the token belongs to", body = RobotView)),
    security(("robot" = []))
)]
pub async fn own(RobotAuth(robot): RobotAuth) -> Json<RobotView> {
    Json(robot.view())
}
