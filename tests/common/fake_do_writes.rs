//! The fake DigitalOcean API's writes, as its OpenAPI document describes them
//! (facts copied into this file, since the project tests without it):
//!
//! - `POST /v2/droplets/{id}/actions`: body `{type, ...}` with `type` one of
//!   the documented droplet action types; `rename` carries `name` (string),
//!   `resize` carries `size` (a size slug) and `disk` (boolean). Answers 201
//!   `{action}`. An unfinished action locks the droplet, and a new action then
//!   fails with 422 (the Droplet Actions description); a running droplet
//!   cannot be resized (422), as DigitalOcean refuses it.
//! - Actions: `{id, status: in-progress|completed|errored, type, started_at,
//!   completed_at (null while in progress), resource_id, resource_type, region_slug}`.
//! - `POST /v2/tags` `{name}` (name: `^[a-zA-Z0-9_\-:]+$`, at most 255): 201 `{tag}`.
//! - `POST|DELETE /v2/tags/{tag}/resources` `{resources: [{resource_id: string,
//!   resource_type: droplet|image|volume|volume_snapshot}]}` (required): 204.
//! - `POST /v2/volumes/{id}/actions` `{type: resize, size_gigabytes (integer,
//!   at most 16384, required), region}`: 202 `{action}`; volumes only grow.
//! - `PUT /v2/firewalls/{id}`: `name` required (`^[a-zA-Z0-9][a-zA-Z0-9\.-]+$`)
//!   and at least one of `inbound_rules` / `outbound_rules`, each rule
//!   `{protocol: tcp|udp|icmp, ports: string, sources|destinations: object}`;
//!   every attribute left out is reset. 200 `{firewall}`.
//! - Errors: `{id, message, request_id}`; 400 `bad_request` for a body that does not parse.

use super::fake_do::{FakeState, error};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DROPLET_ACTIONS: [&str; 15] = [
    "enable_backups",
    "disable_backups",
    "reboot",
    "power_cycle",
    "shutdown",
    "power_off",
    "power_on",
    "restore",
    "password_reset",
    "resize",
    "rebuild",
    "rename",
    "change_kernel",
    "enable_ipv6",
    "snapshot",
];
const TAGGABLE: [&str; 4] = ["droplet", "image", "volume", "volume_snapshot"];

/// One write the fake received: method, path and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub body: Value,
}

pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn invalid(message: &str) -> Response {
    error(422, "unprocessable_entity", message)
}

pub fn serve_write(state: &Arc<Mutex<FakeState>>, method: &str, path: &str, body: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(if body.is_empty() { b"null" } else { body }) else {
        return error(400, "bad_request", "error parsing request body");
    };
    let mut s = state.lock().unwrap();
    s.writes.push(Write { method: method.into(), path: path.into(), body: body.clone() });
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["v2", "droplets", id, "actions"]) => droplet_action(&mut s, state, id, &body),
        ("POST", ["v2", "volumes", id, "actions"]) => volume_action(&mut s, state, id, &body),
        ("POST", ["v2", "tags"]) => create_tag(&mut s, &body),
        (m @ ("POST" | "DELETE"), ["v2", "tags", tag, "resources"]) => tag_resources(&mut s, m == "POST", tag, &body),
        ("PUT", ["v2", "firewalls", id]) => update_firewall(&mut s, id, &body),
        _ => error(404, "not_found", "The resource you requested could not be found."),
    }
}

fn find<'a>(s: &'a mut FakeState, collection: &str, id: &str) -> Option<&'a mut Value> {
    s.collection_mut(collection).iter_mut().find(|item| match &item["id"] {
        Value::Number(n) => n.to_string() == id,
        Value::String(x) => x == id,
        _ => false,
    })
}

fn droplet_action(s: &mut FakeState, state: &Arc<Mutex<FakeState>>, id: &str, body: &Value) -> Response {
    let Some(kind) = body["type"].as_str().filter(|t| DROPLET_ACTIONS.contains(t)) else {
        return error(400, "bad_request", "type is required and must be a droplet action type");
    };
    let field_ok = match kind {
        "rename" => body["name"].is_string(),
        "resize" => body["size"].is_string() && (body["disk"].is_null() || body["disk"].is_boolean()),
        _ => true,
    };
    if !field_ok {
        return invalid(&format!("invalid attributes for a {kind} action"));
    }
    let Some(droplet) = find(s, "/v2/droplets", id) else {
        return error(404, "not_found", "The resource you requested could not be found.");
    };
    if droplet["locked"] == json!(true) {
        return invalid("Droplet already has a pending event.");
    }
    if kind == "resize" && droplet["status"] != json!("off") {
        return invalid("Droplet must be powered off before resizing.");
    }
    droplet["locked"] = json!(true);
    let numeric: u64 = id.parse().unwrap_or_default();
    let action = s.start_action(numeric, "droplet", kind);
    let effect = body.clone();
    schedule(s.action_delay, state, action["id"].as_u64().unwrap(), move |s| apply_droplet(s, numeric, &effect));
    (StatusCode::CREATED, axum::Json(json!({"action": action}))).into_response()
}

fn apply_droplet(s: &mut FakeState, id: u64, body: &Value) {
    let Some(d) = find(s, "/v2/droplets", &id.to_string()) else { return };
    d["locked"] = json!(false);
    match body["type"].as_str().unwrap_or_default() {
        "rename" => d["name"] = body["name"].clone(),
        "power_on" => d["status"] = json!("active"),
        "shutdown" | "power_off" => d["status"] = json!("off"),
        "resize" => {
            d["size_slug"] = body["size"].clone();
            d["size"]["slug"] = body["size"].clone();
        }
        _ => {}
    }
}

/// Ends an action after the fake's action delay: completed with its effect,
/// or errored without it when the test asked for that type to fail.
fn schedule(
    delay: Duration,
    state: &Arc<Mutex<FakeState>>,
    action: u64,
    effect: impl FnOnce(&mut FakeState) + Send + 'static,
) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut s = state.lock().unwrap();
        let kind = s.action(action).map(|a| a["type"].as_str().unwrap_or_default().to_owned()).unwrap_or_default();
        let errored = s.fail_actions.remove(&kind);
        if errored {
            if let Some(id) = s.action(action).and_then(|a| a["resource_id"].as_u64())
                && let Some(d) = find(&mut s, "/v2/droplets", &id.to_string())
            {
                d["locked"] = json!(false);
            }
        } else {
            effect(&mut s);
        }
        s.end_action(action, if errored { "errored" } else { "completed" });
    });
}

fn volume_action(s: &mut FakeState, state: &Arc<Mutex<FakeState>>, id: &str, body: &Value) -> Response {
    if body["type"] != json!("resize") {
        return invalid("only resize is supported by this fake");
    }
    let Some(size) = body["size_gigabytes"].as_u64().filter(|g| *g <= 16_384) else {
        return invalid("size_gigabytes is required: an integer of at most 16384");
    };
    let Some(volume) = find(s, "/v2/volumes", id) else {
        return error(404, "not_found", "The resource you requested could not be found.");
    };
    if volume["size_gigabytes"].as_u64().is_some_and(|have| size < have) {
        return invalid("Volumes may only be resized upwards.");
    }
    let action = s.start_action(0, "volume", "resize_volume");
    let id = id.to_owned();
    schedule(s.action_delay, state, action["id"].as_u64().unwrap(), move |s| {
        if let Some(v) = find(s, "/v2/volumes", &id) {
            v["size_gigabytes"] = json!(size);
        }
    });
    (StatusCode::ACCEPTED, axum::Json(json!({"action": action}))).into_response()
}

fn valid_tag(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c))
}

fn create_tag(s: &mut FakeState, body: &Value) -> Response {
    let Some(name) = body["name"].as_str().filter(|n| valid_tag(n)) else {
        let body = json!({"error": format!("Error validating resource tag: {body}"), "messages": null, "root_causes": ["invalid tag name"]});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    s.tags.insert(name.to_owned());
    (StatusCode::CREATED, axum::Json(json!({"tag": {"name": name, "resources": {"count": 0}}}))).into_response()
}

fn tag_resources(s: &mut FakeState, attach: bool, tag: &str, body: &Value) -> Response {
    let Some(resources) = body["resources"].as_array().filter(|r| !r.is_empty()) else {
        return error(400, "bad_request", "resources is required");
    };
    let well_formed = resources
        .iter()
        .all(|r| r["resource_id"].is_string() && r["resource_type"].as_str().is_some_and(|t| TAGGABLE.contains(&t)));
    if !well_formed {
        return invalid(
            "each resource needs a string resource_id and a resource_type of droplet, image, volume or volume_snapshot",
        );
    }
    if !s.tags.contains(tag) {
        return error(404, "not_found", "The resource you requested could not be found.");
    }
    for r in resources {
        let collection = if r["resource_type"] == json!("volume") { "/v2/volumes" } else { "/v2/droplets" };
        if let Some(item) = find(s, collection, r["resource_id"].as_str().unwrap()) {
            let mut tags: Vec<Value> = item["tags"].as_array().cloned().unwrap_or_default();
            tags.retain(|t| t != tag);
            if attach {
                tags.push(json!(tag));
            }
            item["tags"] = Value::Array(tags);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

fn update_firewall(s: &mut FakeState, id: &str, body: &Value) -> Response {
    let name_ok = body["name"].as_str().is_some_and(|n| {
        n.len() >= 2
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
    });
    if !name_ok {
        return invalid("name is required and must match ^[a-zA-Z0-9][a-zA-Z0-9.-]+$");
    }
    if body["inbound_rules"].is_null() && body["outbound_rules"].is_null() {
        return invalid("inbound_rules or outbound_rules is required");
    }
    for (key, target) in [("inbound_rules", "sources"), ("outbound_rules", "destinations")] {
        let rules = body[key].as_array().cloned().unwrap_or_default();
        let ok = rules.iter().all(|r| {
            r["protocol"].as_str().is_some_and(|p| ["tcp", "udp", "icmp"].contains(&p))
                && r["ports"].is_string()
                && r[target].is_object()
        });
        if !ok {
            return invalid(&format!("each of {key} needs protocol (tcp, udp, icmp), ports (a string) and {target}"));
        }
    }
    let Some(firewall) = find(s, "/v2/firewalls", id) else {
        return error(404, "not_found", "The resource you requested could not be found.");
    };
    // A full replacement: what the body leaves out is reset.
    for key in ["name", "inbound_rules", "outbound_rules", "droplet_ids", "tags"] {
        firewall[key] = if body[key].is_null() && key != "name" { json!([]) } else { body[key].clone() };
    }
    firewall["status"] = json!("succeeded");
    (StatusCode::OK, axum::Json(json!({"firewall": firewall.clone()}))).into_response()
}
