//! The DigitalOcean API's objects, as much of them as the inventory keeps,
//! and their mapping into CloudResource status. Unknown fields are ignored, so
//! a database's connection credentials and users are never even read into memory.

use crate::api::{CloudResourceStatus, Fields};
use crate::providers::contract::LiveResource;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub struct RegionObject {
    pub slug: String,
}

#[derive(Deserialize)]
pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub size_slug: String,
    pub region: RegionObject,
    #[serde(default)]
    pub memory: Option<u64>,
    #[serde(default)]
    pub vcpus: Option<u64>,
    #[serde(default)]
    pub disk: Option<u64>,
    #[serde(default)]
    pub locked: Option<bool>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub image: Option<Image>,
    #[serde(default)]
    pub volume_ids: Option<Vec<String>>,
    #[serde(default)]
    pub networks: Option<Networks>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub vpc_uuid: Option<String>,
    #[serde(default)]
    pub gpu_info: Option<Value>,
}

#[derive(Deserialize)]
pub struct Image {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub distribution: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct Networks {
    #[serde(default)]
    pub v4: Vec<Network>,
    #[serde(default)]
    pub v6: Vec<Network>,
}

#[derive(Deserialize)]
pub struct Network {
    pub ip_address: String,
    #[serde(rename = "type")]
    pub type_: String,
}

#[derive(Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub region: RegionObject,
    #[serde(default)]
    pub size_gigabytes: Option<u64>,
    #[serde(default)]
    pub droplet_ids: Option<Vec<u64>>,
    #[serde(default)]
    pub filesystem_type: Option<String>,
    #[serde(default)]
    pub filesystem_label: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub region: Option<RegionObject>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub size_unit: Option<u64>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub ipv6: Option<String>,
    #[serde(default)]
    pub droplet_ids: Option<Vec<u64>>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub vpc_uuid: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub forwarding_rules: Option<Value>,
    #[serde(default)]
    pub redirect_http_to_https: Option<bool>,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
}

/// A database cluster, without `connection`, `private_connection`, `standby_*`,
/// `users`, `ui_connection` or `schema_registry_connection`: they hold passwords.
#[derive(Deserialize)]
pub struct Database {
    pub id: String,
    pub name: String,
    pub engine: String,
    pub region: String,
    pub size: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub num_nodes: Option<u64>,
    #[serde(default)]
    pub private_network_uuid: Option<String>,
    #[serde(default)]
    pub storage_size_mib: Option<u64>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub struct KubernetesCluster {
    pub id: String,
    pub name: String,
    pub region: String,
    pub version: String,
    #[serde(default)]
    pub node_pools: Vec<NodePool>,
    #[serde(default)]
    pub status: Option<KubernetesStatus>,
    #[serde(default)]
    pub vpc_uuid: Option<String>,
    #[serde(default)]
    pub ha: Option<bool>,
    #[serde(default)]
    pub auto_upgrade: Option<bool>,
    #[serde(default)]
    pub surge_upgrade: Option<bool>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub struct NodePool {
    pub name: String,
    pub size: String,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub auto_scale: Option<bool>,
    #[serde(default)]
    pub min_nodes: Option<u64>,
    #[serde(default)]
    pub max_nodes: Option<u64>,
}

#[derive(Deserialize)]
pub struct KubernetesStatus {
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Deserialize)]
pub struct Firewall {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub droplet_ids: Option<Vec<u64>>,
    #[serde(default)]
    pub inbound_rules: Option<Value>,
    #[serde(default)]
    pub outbound_rules: Option<Value>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Free-form attributes: only the keys that have a value.
fn attrs(pairs: Vec<(&str, Option<Value>)>) -> Option<Fields> {
    let fields: Fields = pairs.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    (!fields.is_empty()).then_some(fields)
}

fn some<T: serde::Serialize>(v: &Option<T>) -> Option<Value> {
    v.as_ref().map(|v| json!(v))
}

impl From<Droplet> for LiveResource {
    fn from(d: Droplet) -> Self {
        let networks = d.networks.unwrap_or_default();
        let ip = |list: &[Network], kind: &str| list.iter().find(|n| n.type_ == kind).map(|n| json!(n.ip_address));
        let image = d.image.as_ref();
        LiveResource {
            region: None,
            type_: "droplet",
            id: d.id.to_string(),
            status: CloudResourceStatus {
                name: Some(d.name),
                region: Some(d.region.slug),
                status: Some(d.status),
                // `size` for every reader; `sizeSlug` for readers of schema 6, one more release.
                size: Some(d.size_slug.clone()),
                size_slug: Some(d.size_slug),
                tags: Some(d.tags.unwrap_or_default()),
                attrs: attrs(vec![
                    ("image", image.and_then(|i| i.slug.clone().or_else(|| i.name.clone())).map(|s| json!(s))),
                    ("image_id", image.and_then(|i| i.id).map(|id| json!(id))),
                    ("image_distribution", image.and_then(|i| i.distribution.clone()).map(|s| json!(s))),
                    ("vcpus", some(&d.vcpus)),
                    ("memory", some(&d.memory)),
                    ("disk", some(&d.disk)),
                    ("locked", some(&d.locked)),
                    ("vpc_uuid", some(&d.vpc_uuid)),
                    ("public_ipv4", ip(&networks.v4, "public")),
                    ("private_ipv4", ip(&networks.v4, "private")),
                    ("public_ipv6", ip(&networks.v6, "public")),
                    ("volume_ids", some(&d.volume_ids)),
                    ("features", some(&d.features)),
                    ("gpu_info", d.gpu_info),
                    ("created_at", some(&d.created_at)),
                ]),
                ..Default::default()
            },
        }
    }
}

impl From<Volume> for LiveResource {
    fn from(v: Volume) -> Self {
        LiveResource {
            region: None,
            type_: "volume",
            id: v.id,
            status: CloudResourceStatus {
                name: Some(v.name),
                region: Some(v.region.slug),
                tags: Some(v.tags.unwrap_or_default()),
                attrs: attrs(vec![
                    ("size_gigabytes", some(&v.size_gigabytes)),
                    ("droplet_ids", some(&v.droplet_ids)),
                    ("filesystem_type", some(&v.filesystem_type)),
                    ("filesystem_label", some(&v.filesystem_label)),
                    ("description", some(&v.description)),
                    ("created_at", some(&v.created_at)),
                ]),
                ..Default::default()
            },
        }
    }
}

impl From<LoadBalancer> for LiveResource {
    fn from(lb: LoadBalancer) -> Self {
        let tags = lb.tag.clone().filter(|t| !t.is_empty()).into_iter().collect();
        LiveResource {
            region: None,
            type_: "load_balancer",
            id: lb.id,
            status: CloudResourceStatus {
                name: Some(lb.name),
                region: lb.region.map(|r| r.slug),
                status: lb.status,
                size: lb.size.clone(),
                size_slug: lb.size,
                tags: Some(tags),
                attrs: attrs(vec![
                    ("size_unit", some(&lb.size_unit)),
                    ("ip", some(&lb.ip)),
                    ("ipv6", some(&lb.ipv6)),
                    ("droplet_ids", some(&lb.droplet_ids)),
                    ("tag", some(&lb.tag)),
                    ("vpc_uuid", some(&lb.vpc_uuid)),
                    ("forwarding_rules", lb.forwarding_rules),
                    ("redirect_http_to_https", some(&lb.redirect_http_to_https)),
                    ("type", some(&lb.type_)),
                    ("created_at", some(&lb.created_at)),
                ]),
                ..Default::default()
            },
        }
    }
}

impl From<Database> for LiveResource {
    fn from(db: Database) -> Self {
        LiveResource {
            region: None,
            type_: "database",
            id: db.id,
            status: CloudResourceStatus {
                name: Some(db.name),
                region: Some(db.region),
                status: db.status,
                size: Some(db.size.clone()),
                size_slug: Some(db.size),
                tags: Some(db.tags.unwrap_or_default()),
                attrs: attrs(vec![
                    ("engine", Some(json!(db.engine))),
                    ("version", some(&db.version)),
                    ("num_nodes", some(&db.num_nodes)),
                    ("private_network_uuid", some(&db.private_network_uuid)),
                    ("storage_size_mib", some(&db.storage_size_mib)),
                    ("project_id", some(&db.project_id)),
                    ("created_at", some(&db.created_at)),
                ]),
                ..Default::default()
            },
        }
    }
}

impl From<KubernetesCluster> for LiveResource {
    fn from(k: KubernetesCluster) -> Self {
        let pools: Vec<Value> = k
            .node_pools
            .iter()
            .map(|p| {
                json!({"name": p.name, "size": p.size, "count": p.count, "auto_scale": p.auto_scale,
                       "min_nodes": p.min_nodes, "max_nodes": p.max_nodes})
            })
            .collect();
        LiveResource {
            region: None,
            type_: "kubernetes_cluster",
            id: k.id,
            status: CloudResourceStatus {
                name: Some(k.name),
                region: Some(k.region),
                status: k.status.and_then(|s| s.state),
                tags: Some(k.tags.unwrap_or_default()),
                attrs: attrs(vec![
                    ("version", Some(json!(k.version))),
                    ("node_pools", Some(Value::Array(pools))),
                    ("vpc_uuid", some(&k.vpc_uuid)),
                    ("ha", some(&k.ha)),
                    ("auto_upgrade", some(&k.auto_upgrade)),
                    ("surge_upgrade", some(&k.surge_upgrade)),
                    ("created_at", some(&k.created_at)),
                ]),
                ..Default::default()
            },
        }
    }
}

impl From<Firewall> for LiveResource {
    fn from(f: Firewall) -> Self {
        LiveResource {
            region: None,
            type_: "firewall",
            id: f.id,
            status: CloudResourceStatus {
                name: Some(f.name),
                status: f.status,
                tags: Some(f.tags.unwrap_or_default()),
                attrs: attrs(vec![
                    ("droplet_ids", some(&f.droplet_ids)),
                    ("inbound_rules", f.inbound_rules),
                    ("outbound_rules", f.outbound_rules),
                    ("created_at", some(&f.created_at)),
                ]),
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_droplet_maps_to_a_cloud_resource_status() {
        let droplet: Droplet = serde_json::from_value(json!({
            "id": 3164444, "name": "example.com", "memory": 1024, "vcpus": 1, "disk": 25, "locked": false,
            "status": "active", "kernel": null, "created_at": "2020-07-21T18:37:44Z",
            "features": ["backups", "private_networking", "ipv6"], "backup_ids": [53893572],
            "next_backup_window": {"start": "2020-07-30T00:00:00Z", "end": "2020-07-30T23:00:00Z"},
            "snapshot_ids": [67512819],
            "image": {"id": 63663980, "name": "20.04 (LTS) x64", "distribution": "Ubuntu", "slug": "ubuntu-20-04-x64"},
            "volume_ids": [], "size": {"slug": "s-1vcpu-1gb"}, "size_slug": "s-1vcpu-1gb",
            "networks": {"v4": [{"ip_address": "10.128.192.124", "netmask": "255.255.0.0", "gateway": "nil", "type": "private"},
                                {"ip_address": "192.241.165.154", "netmask": "255.255.255.0", "gateway": "192.241.165.1", "type": "public"}],
                         "v6": [{"ip_address": "2604:a880:0:1010::18a:a001", "netmask": 64, "gateway": "2604:a880:0:1010::1", "type": "public"}]},
            "region": {"name": "New York 3", "slug": "nyc3", "features": [], "available": true, "sizes": []},
            "tags": ["web", "env:prod"], "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000"
        }))
        .unwrap();
        let o = LiveResource::from(droplet);
        assert_eq!((o.type_, o.id.as_str()), ("droplet", "3164444"));
        let s = o.status;
        assert_eq!(s.region.as_deref(), Some("nyc3"));
        assert_eq!(s.size_slug.as_deref(), Some("s-1vcpu-1gb"));
        assert_eq!(s.size.as_deref(), Some("s-1vcpu-1gb"), "the neutral field, beside the legacy one");
        assert_eq!(s.tags, Some(vec!["web".to_string(), "env:prod".to_string()]));
        let a = s.attrs.unwrap();
        assert_eq!(a.get("image").unwrap(), "ubuntu-20-04-x64");
        assert_eq!(a.get("vcpus").unwrap(), 1);
        assert_eq!(a.get("public_ipv4").unwrap(), "192.241.165.154");
        assert_eq!(a.get("private_ipv4").unwrap(), "10.128.192.124");
        assert_eq!(a.get("vpc_uuid").unwrap(), "760e09ef-dc84-11e8-981e-3cfdfeaae000");
    }

    #[test]
    fn database_credentials_are_never_kept() {
        let db: Database = serde_json::from_value(json!({
            "id": "9cc10173-e9ea-4176-9dbc-a4cee4c4ff30", "name": "backend", "engine": "pg", "version": "14",
            "num_nodes": 1, "size": "db-s-2vcpu-4gb", "region": "nyc3", "status": "online",
            "connection": {"uri": "postgres://doadmin:wv78n3zpz42xezdk@host:25060/defaultdb", "password": "wv78n3zpz42xezdk"},
            "users": [{"name": "doadmin", "role": "primary", "password": "wv78n3zpz42xezdk"}]
        }))
        .unwrap();
        let o = LiveResource::from(db);
        let text = serde_json::to_string(&o.status).unwrap();
        assert!(!text.contains("wv78n3zpz42xezdk"), "{text}");
        assert_eq!(o.status.size_slug.as_deref(), Some("db-s-2vcpu-4gb"));
    }
}
