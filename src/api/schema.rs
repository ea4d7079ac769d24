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

/// A map from field name to any JSON value, with at least one entry
/// (an empty desired state would check nothing and hide mistakes).
pub fn desired_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "nullable": true,
            "x-kubernetes-preserve-unknown-fields": true,
        },
        "maxProperties": 256,
        "x-kubernetes-validations": [
            {
                "rule": "size(self) > 0",
                "message": "spec.desired must name at least one field to check",
            },
            {
                "rule": "self.all(k, size(k) > 0 && size(k) <= 253)",
                "message": "spec.desired keys must be field names of 1 to 253 characters",
            },
        ],
    })
}
