//! Schemas the derive cannot say: a field that takes a few spellings, or
//! is optional in a way JSON writes as `null`.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// A string that is one of `values`.
pub fn string_enum(values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).into()
}

/// `schema`, or `null` (an optional field a client may send as `null`).
pub fn or_null(schema: RefOr<Schema>) -> Schema {
    let null = ObjectBuilder::new().schema_type(Type::Null);
    OneOfBuilder::new().item(schema).item(null).build().into()
}
