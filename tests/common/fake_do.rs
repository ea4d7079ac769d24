//! A fake DigitalOcean API v2 on loopback, faithful to the documented shapes:
//! droplet JSON, `links.pages` with absolute `next` URLs and `meta.total`,
//! error bodies `{id, message, request_id}`, and rate-limit headers. Faults are
//! queued per request to exercise retries and partial listings.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use super::fake_do_writes::Write;

pub const TOKEN: &str = "dop_v1_fake_token_for_tests";

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and the documented error body; `retry-after` seconds for 429.
    Status(u16, Option<u64>),
    /// Start a 200 body and cut the connection half-way.
    Truncated,
    /// A 200 whose body is not JSON.
    Malformed,
}

#[derive(Default)]
pub struct FakeState {
    /// Collection path => (list key, items in listing order).
    collections: BTreeMap<&'static str, (&'static str, Vec<Value>)>,
    gpus: Vec<Value>,
    pub page_size: usize,
    faults: VecDeque<Fault>,
    /// After serving this page of /v2/droplets, insert this droplet at the front.
    insert_after_page: Option<(usize, Value)>,
    /// Answer this page of /v2/droplets with this status, this many times.
    fail_page: Option<(usize, u16, usize)>,
    /// Every request path and query, in order.
    pub requests: Vec<String>,
    remaining: u64,
    /// The account's actions, oldest first; served newest first, as the API does.
    actions: Vec<Value>,
    /// Every write (POST, PUT, DELETE) with its body, in order.
    pub writes: Vec<Write>,
    /// The account's tags.
    pub tags: BTreeSet<String>,
    /// The next action of each of these types ends errored.
    pub fail_actions: BTreeSet<String>,
    /// How long an action the fake starts stays in progress.
    pub action_delay: Duration,
    /// Once a droplet action of this type was accepted, every `GET /v2/actions/{id}` answers 403.
    pub forbid_action_reads_after: Option<String>,
    forbid_action_reads: bool,
    /// The next droplet action of this type is carried out, and its answer held back this long.
    pub hold_answer: Option<(String, Duration)>,
    /// The next listing of `/v2/droplets` is read at once and answered this much later.
    pub hold_listing: Option<Duration>,
    /// Listings held so far (each answered after its hold).
    pub held_listings: usize,
    /// GETs of these exact paths answer this status, once each.
    pub fail_get_once: BTreeMap<String, u16>,
}

impl FakeState {
    pub fn collection_mut(&mut self, path: &str) -> &mut Vec<Value> {
        &mut self.collections.get_mut(path).expect("known collection").1
    }

    /// Starts an action in progress, as a write does; returns it.
    pub fn start_action(&mut self, resource_id: u64, resource_type: &str, kind: &str) -> Value {
        let id = self.next_action_id();
        let action = json!({
            "id": id, "status": "in-progress", "type": kind,
            "started_at": super::fake_do_writes::now_rfc3339(), "completed_at": null,
            "resource_id": resource_id, "resource_type": resource_type, "region_slug": "nyc3",
        });
        self.actions.push(action.clone());
        action
    }

    /// Action ids only grow, as the API's do (even after one is forgotten).
    fn next_action_id(&self) -> u64 {
        self.actions.iter().filter_map(|a| a["id"].as_u64()).max().map_or(36_804_636, |newest| newest + 1)
    }

    pub fn action(&self, id: u64) -> Option<&Value> {
        self.actions.iter().find(|a| a["id"] == id)
    }

    pub fn end_action(&mut self, id: u64, status: &str) {
        for a in &mut self.actions {
            if a["id"] == id {
                a["status"] = json!(status);
                a["completed_at"] = json!(super::fake_do_writes::now_rfc3339());
            }
        }
    }
}

pub struct FakeDo {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeDo {
    pub async fn start() -> Self {
        let mut state = FakeState {
            page_size: 200,
            remaining: 5000,
            action_delay: Duration::from_millis(300),
            ..Default::default()
        };
        for (path, key) in [
            ("/v2/droplets", "droplets"),
            ("/v2/volumes", "volumes"),
            ("/v2/load_balancers", "load_balancers"),
            ("/v2/databases", "databases"),
            ("/v2/kubernetes/clusters", "kubernetes_clusters"),
            ("/v2/firewalls", "firewalls"),
        ] {
            state.collections.insert(path, (key, Vec::new()));
        }
        let state = Arc::new(Mutex::new(state));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // A thread of its own: a test blocked on the controller (its /healthz,
        // a kubectl run) must not hold up the controller's calls to the fake.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap()
            })
        });
        FakeDo { url, state }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn add(&self, path: &'static str, item: Value) {
        self.with(|s| s.collections.get_mut(path).expect("known collection").1.push(item));
    }

    pub fn add_gpu(&self, item: Value) {
        self.with(|s| s.gpus.push(item));
    }

    pub fn remove_droplet(&self, id: u64) {
        self.with(|s| s.collections.get_mut("/v2/droplets").unwrap().1.retain(|d| d["id"] != id));
    }

    pub fn resize_droplet(&self, id: u64, size: &str) {
        self.with(|s| {
            for d in &mut s.collections.get_mut("/v2/droplets").unwrap().1 {
                if d["id"] == id {
                    d["size_slug"] = json!(size);
                    d["size"]["slug"] = json!(size);
                }
            }
        })
    }

    /// Records an action in the account's feed (`in-progress`, `completed`
    /// or `errored`), with the fields of DigitalOcean's action object; returns its id.
    pub fn record_action(&self, resource_id: u64, resource_type: &str, kind: &str, status: &str) -> u64 {
        self.with(|s| {
            let id = s.next_action_id();
            s.actions.push(json!({
                "id": id, "status": status, "type": kind,
                "started_at": super::fake_do_writes::now_rfc3339(),
                "completed_at": if status == "in-progress" { Value::Null } else { json!("2026-11-30T02:00:45Z") },
                "resource_id": resource_id, "resource_type": resource_type,
                "region_slug": "nyc3",
            }));
            id
        })
    }

    /// Moves a recorded action to another status (an in-progress one completing).
    pub fn finish_action(&self, id: u64, status: &str) {
        self.with(|s| {
            for a in &mut s.actions {
                if a["id"] == id {
                    a["status"] = json!(status);
                    a["completed_at"] = json!("2026-11-30T02:01:00Z");
                }
            }
        })
    }

    pub fn fault(&self, fault: Fault) {
        self.with(|s| s.faults.push_back(fault));
    }

    pub fn fail_page(&self, page: usize, status: u16, times: usize) {
        self.with(|s| s.fail_page = Some((page, status, times)));
    }

    pub fn insert_after_page(&self, page: usize, droplet: Value) {
        self.with(|s| s.insert_after_page = Some((page, droplet)));
    }

    pub fn requests(&self) -> Vec<String> {
        self.with(|s| s.requests.clone())
    }

    pub fn writes(&self) -> Vec<Write> {
        self.with(|s| s.writes.clone())
    }

    /// The next action of this type (`resize`, `power_on`, ...) ends errored.
    pub fn fail_next_action(&self, kind: &str) {
        self.with(|s| s.fail_actions.insert(kind.to_owned()));
    }

    /// One droplet as the fake holds it now.
    pub fn droplet(&self, id: u64) -> Value {
        self.with(|s| {
            s.collection_mut("/v2/droplets").iter().find(|d| d["id"] == id).cloned().expect("a known droplet")
        })
    }

    /// The API forgets an action (later reads of it answer 404).
    pub fn forget_action(&self, id: u64) {
        self.with(|s| s.actions.retain(|a| a["id"] != id));
    }

    /// The actions of one resource, oldest first.
    pub fn actions_of(&self, resource_id: u64) -> Vec<Value> {
        self.with(|s| s.actions.iter().filter(|a| a["resource_id"] == resource_id).cloned().collect())
    }
}

/// `GET /v2/actions/{id}` and `GET /v2/{droplets,volumes}/{id}/actions` (newest first).
fn serve_actions(s: &FakeState, path: &str, query: &BTreeMap<String, String>) -> Option<Response> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v2", "actions", _] if s.forbid_action_reads => {
            Some(error(403, "forbidden", "You are not authorized to perform this operation."))
        }
        ["v2", "actions", id] => {
            Some(match s.actions.iter().find(|a| a["id"].as_u64().is_some_and(|n| n.to_string() == *id)) {
                Some(a) => axum::Json(json!({"action": a})).into_response(),
                None => error(404, "not_found", "The resource you requested could not be found."),
            })
        }
        // The API documents no order for a resource's actions: served oldest
        // first, in pages, so a client that takes the first page as the newest is caught.
        ["v2", "droplets" | "volumes", id, "actions"] => {
            let mine: Vec<&Value> =
                s.actions.iter().filter(|a| a["resource_id"].as_u64().is_some_and(|n| n.to_string() == *id)).collect();
            let per_page: usize = query.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(20).clamp(1, 200);
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
            let items: Vec<&Value> = mine.iter().skip((page - 1) * per_page).take(per_page).copied().collect();
            let links = if page * per_page < mine.len() {
                let next = format!("https://api.digitalocean.com{path}?page={}&per_page={per_page}", page + 1);
                json!({"pages": {"next": next}})
            } else {
                json!({})
            };
            Some(axum::Json(json!({"actions": items, "links": links, "meta": {"total": mine.len()}})).into_response())
        }
        _ => None,
    }
}

/// A droplet as the API documents it.
pub fn droplet(id: u64, name: &str, size: &str, region: &str, tags: &[&str]) -> Value {
    json!({
        "id": id, "name": name, "memory": 1024, "vcpus": 1, "disk": 25,
        "disk_info": [{"type": "local", "size": {"amount": 25, "unit": "gib"}}],
        "locked": false, "status": "active", "kernel": null, "created_at": "2020-07-21T18:37:44Z",
        "features": ["backups", "private_networking", "ipv6"], "backup_ids": [53893572],
        "next_backup_window": {"start": "2020-07-30T00:00:00Z", "end": "2020-07-30T23:00:00Z"},
        "snapshot_ids": [67512819],
        "image": {"id": 63663980, "name": "20.04 (LTS) x64", "distribution": "Ubuntu", "slug": "ubuntu-20-04-x64",
                  "public": true, "regions": ["ams2", "nyc3", "sfo3"], "created_at": "2020-05-15T05:47:50Z",
                  "type": "snapshot", "min_disk_size": 20, "size_gigabytes": 2.36, "description": "", "tags": [],
                  "status": "available", "error_message": ""},
        "volume_ids": [],
        "size": {"slug": size, "memory": 1024, "vcpus": 1, "disk": 25, "transfer": 1.0, "price_monthly": 5.0,
                 "price_hourly": 0.00744, "regions": ["ams2", "nyc3", "sfo3"], "available": true, "description": "Basic"},
        "size_slug": size,
        "networks": {"v4": [{"ip_address": "10.128.192.124", "netmask": "255.255.0.0", "gateway": "nil", "type": "private"},
                            {"ip_address": "192.241.165.154", "netmask": "255.255.255.0", "gateway": "192.241.165.1", "type": "public"}],
                     "v6": [{"ip_address": "2604:a880:0:1010::18a:a001", "netmask": 64, "gateway": "2604:a880:0:1010::1", "type": "public"}]},
        "region": {"name": "New York 3", "slug": region, "features": ["private_networking", "backups", "ipv6"],
                   "available": true, "sizes": ["s-1vcpu-1gb", "s-1vcpu-2gb"]},
        "tags": tags, "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000"
    })
}

pub fn error(status: u16, id: &str, message: &str) -> Response {
    let body = json!({"id": id, "message": message, "request_id": "4d9d8375-3c56-4925-a3e7-eceef5b7b3e0"});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn handle(State(state): State<Arc<Mutex<FakeState>>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().as_str().to_owned();
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let authorized =
        request.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    let path_and_query = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
    if method != "GET" && authorized && state.lock().unwrap().faults.is_empty() {
        let mut response = super::fake_do_writes::serve_write(&state, &method, &path, &body);
        let hold = {
            let mut s = state.lock().unwrap();
            s.requests.push(path_and_query);
            s.remaining = s.remaining.saturating_sub(1);
            rate_limit_headers(response.headers_mut(), s.remaining);
            let kind = serde_json::from_slice::<Value>(&body).ok().and_then(|b| b["type"].as_str().map(str::to_owned));
            let accepted = response.status().is_success();
            if accepted && kind.is_some() && kind == s.forbid_action_reads_after {
                s.forbid_action_reads = true;
            }
            match &s.hold_answer {
                Some((held, delay)) if accepted && kind.as_ref() == Some(held) => {
                    let delay = *delay;
                    s.hold_answer = None;
                    Some(delay)
                }
                _ => None,
            }
        };
        if let Some(delay) = hold {
            tokio::time::sleep(delay).await;
        }
        return response;
    }
    let (response, hold) = serve_read(&state, &path, &query, path_and_query, authorized);
    if let Some(delay) = hold {
        tokio::time::sleep(delay).await;
    }
    response
}

/// A read (or a queued fault) answered from the state as it is now; and how
/// long to hold the answer back.
fn serve_read(
    state: &Mutex<FakeState>,
    path: &str,
    query: &BTreeMap<String, String>,
    path_and_query: String,
    authorized: bool,
) -> (Response, Option<Duration>) {
    let mut s = state.lock().unwrap();
    s.requests.push(path_and_query);
    s.remaining = s.remaining.saturating_sub(1);
    let mut response = if !authorized {
        error(401, "unauthorized", "Unable to authenticate you.")
    } else if let Some(code) = s.fail_get_once.remove(path) {
        error(code, "forbidden", "You are not authorized to perform this operation.")
    } else if let Some(fault) = s.faults.pop_front() {
        match fault {
            Fault::Status(429, retry_after) => {
                let mut r = error(429, "too_many_requests", "API Rate limit exceeded.");
                if let Some(seconds) = retry_after {
                    r.headers_mut().insert("retry-after", HeaderValue::from(seconds));
                }
                r
            }
            Fault::Status(code, _) => error(code, "server_error", "Unexpected server-side error"),
            Fault::Malformed => {
                (StatusCode::OK, [("content-type", "application/json")], "{\"droplets\": [{\"id\": 1,").into_response()
            }
            Fault::Truncated => {
                let chunks: Vec<Result<&'static str, std::io::Error>> =
                    vec![Ok("{\"droplets\": [{\"id\": 1"), Err(std::io::Error::other("connection cut"))];
                let mut r = Response::new(Body::from_stream(futures::stream::iter(chunks)));
                r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
                r
            }
        }
    } else {
        serve(&mut s, path, query)
    };
    rate_limit_headers(response.headers_mut(), s.remaining);
    let hold = if path == "/v2/droplets" && !query.contains_key("type") { s.hold_listing.take() } else { None };
    s.held_listings += usize::from(hold.is_some());
    (response, hold)
}

fn rate_limit_headers(headers: &mut HeaderMap, remaining: u64) {
    let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    headers.insert("ratelimit-limit", HeaderValue::from(5000));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
}

fn serve(s: &mut FakeState, path: &str, query: &BTreeMap<String, String>) -> Response {
    if path == "/v2/actions" {
        let per_page: usize = query.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(20);
        let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let newest_first: Vec<Value> =
            s.actions.iter().rev().skip((page - 1) * per_page).take(per_page).cloned().collect();
        return axum::Json(json!({"actions": newest_first, "links": {}, "meta": {"total": s.actions.len()}}))
            .into_response();
    }
    if let Some(response) = serve_actions(s, path, query) {
        return response;
    }
    if let Some((key, items)) = s.collections.get(path) {
        let key = *key;
        let gpus = path == "/v2/droplets" && query.get("type").map(String::as_str) == Some("gpus");
        let items = if gpus { s.gpus.clone() } else { items.clone() };
        if path == "/v2/databases" {
            // The databases list is documented without paging, links or meta.
            return axum::Json(json!({ key: items })).into_response();
        }
        let per_page = query.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(20).min(200).min(s.page_size);
        let page: usize = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
        if path == "/v2/droplets"
            && !gpus
            && let Some((p, status, left)) = s.fail_page.as_mut()
            && *p == page
            && *left > 0
        {
            *left -= 1;
            return error(*status, "server_error", "Unexpected server-side error");
        }
        let start = (page - 1) * per_page;
        let chunk: Vec<Value> = items.iter().skip(start).take(per_page).cloned().collect();
        let more = start + per_page < items.len();
        let type_q = if gpus { "&type=gpus" } else { "" };
        let links = if more {
            let last = items.len().div_ceil(per_page);
            json!({"pages": {
                "next": format!("https://api.digitalocean.com{path}?page={}&per_page={per_page}{type_q}", page + 1),
                "last": format!("https://api.digitalocean.com{path}?page={last}&per_page={per_page}{type_q}"),
            }})
        } else {
            json!({})
        };
        let total = items.len();
        if path == "/v2/droplets"
            && !gpus
            && let Some((after, _)) = &s.insert_after_page
            && *after == page
        {
            let (_, droplet) = s.insert_after_page.take().unwrap();
            s.collections.get_mut(path).unwrap().1.insert(0, droplet);
        }
        return axum::Json(json!({ key: chunk, "links": links, "meta": {"total": total} })).into_response();
    }
    // Single objects: /v2/<collection>/<id>
    let (collection, id) = path.rsplit_once('/').unwrap_or((path, ""));
    let single_key = match collection {
        "/v2/droplets" => "droplet",
        "/v2/volumes" => "volume",
        "/v2/load_balancers" => "load_balancer",
        "/v2/databases" => "database",
        "/v2/kubernetes/clusters" => "kubernetes_cluster",
        "/v2/firewalls" => "firewall",
        _ => {
            return error(404, "not_found", "The resource you requested could not be found.");
        }
    };
    let mut all = s.collections.get(collection).map(|c| c.1.clone()).unwrap_or_default();
    if collection == "/v2/droplets" {
        all.extend(s.gpus.clone());
    }
    match all.into_iter().find(|item| match &item["id"] {
        Value::Number(n) => n.to_string() == id,
        Value::String(x) => x == id,
        _ => false,
    }) {
        Some(item) => axum::Json(json!({ single_key: item })).into_response(),
        None => error(404, "not_found", "The resource you requested could not be found."),
    }
}
