//! Hand-written schema fragments for values that are free-form JSON.
//! schemars would describe `serde_json::Value` as "anything", which the API
//! server would prune; these keep it with `x-kubernetes-preserve-unknown-fields`.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Any JSON value, null included.
pub fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// An optional JSON object with free-form values.
pub fn free_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A map from field name to any JSON value, with at least one entry (an empty
/// desired state would check nothing and hide a mistake). The bounds are plain
/// OpenAPI: CEL cannot type a map whose values may be any JSON.
pub fn desired_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "Flat map: field name => expected value (any JSON). Only these keys are checked; at least one is required.",
        "additionalProperties": {
            "nullable": true,
            "x-kubernetes-preserve-unknown-fields": true,
        },
        "minProperties": 1,
        "maxProperties": 256,
    })
}
