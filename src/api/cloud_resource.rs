use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// One live cloud resource as the provider reports it, named
/// `<provider>-<type>-<id>` (e.g. `digitalocean-droplet-3164444`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "arcadia.cloud",
    version = "v1alpha1",
    kind = "CloudResource",
    plural = "cloudresources",
    singular = "cloudresource",
    shortname = "cres",
    category = "arcadia",
    status = "CloudResourceStatus",
    doc = "A live cloud resource, mirrored from the provider's inventory by a syncer.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "ID", type_ = "string", json_path = ".spec.id"),
    printcolumn(name = "Name", type_ = "string", json_path = ".status.name", priority = 1),
    printcolumn(name = "Region", type_ = "string", json_path = ".status.region"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.size"),
    printcolumn(name = "Missing", type_ = "boolean", json_path = ".status.missing", priority = 1),
    printcolumn(name = "Synced", type_ = "date", json_path = ".status.syncedTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: a CloudResource mirrors exactly one provider resource"))]
pub struct CloudResourceSpec {
    /// Which inventory source owns this object, e.g. `digitalocean`.
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.provider must not be empty"))]
    pub provider: String,
    /// The provider's own word for the kind of resource: droplet, volume, load_balancer, ...
    #[serde(rename = "type")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.type must not be empty"))]
    pub type_: String,
    /// The provider's id, always a string.
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.id must not be empty"))]
    pub id: String,
    /// The region the resource lives in, where the provider's ids are
    /// regional (AWS); absent where they are global (DigitalOcean, whose
    /// region is in `status.region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The observed live state, written by a syncer through the status subresource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudResourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The resource's size in the provider's words (a droplet's size slug,
    /// an instance type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// DigitalOcean's name for `size`, as syncers before schema version 7
    /// wrote it: still written for one release, and read when `size` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_slug: Option<String>,
    /// Tags that are plain strings, compared as a set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Tags that are key/value pairs, compared as a map (a desired `tags`
    /// given as a map compares against this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_map: Option<std::collections::BTreeMap<String, String>>,
    /// Any other live field, free-form JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_object")]
    pub attrs: Option<super::Fields>,
    /// True once the provider no longer lists the resource.
    #[serde(default)]
    pub missing: bool,
    /// When a syncer last confirmed this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_time: Option<Time>,
}

impl CloudResourceStatus {
    /// The live state as the detection core sees it.
    pub fn live_view(&self) -> crate::detect::LiveView<'_> {
        crate::detect::LiveView {
            name: self.name.as_deref(),
            region: self.region.as_deref(),
            status: self.status.as_deref(),
            size: self.size.as_deref().or(self.size_slug.as_deref()),
            tags: self.tags.as_deref(),
            tag_map: self.tag_map.as_ref(),
            attrs: self.attrs.as_ref(),
        }
    }
}

/// Why a CloudResource offers no live state to compare with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absence {
    /// No CloudResource of that name exists.
    NotFound,
    /// The provider no longer lists it (`status.missing: true`).
    GoneFromProvider,
    /// No syncer has written its status yet.
    NeverSynced,
}

impl Absence {
    pub fn describe(self) -> &'static str {
        match self {
            Absence::NotFound => "no CloudResource of that name exists",
            Absence::GoneFromProvider => "the provider no longer lists it",
            Absence::NeverSynced => "its live state has never been synced",
        }
    }
}

impl CloudResource {
    /// The live state to compare with, or why there is none.
    pub fn live(&self) -> Result<crate::detect::LiveView<'_>, Absence> {
        match &self.status {
            None => Err(Absence::NeverSynced),
            Some(s) if s.missing => Err(Absence::GoneFromProvider),
            Some(s) => Ok(s.live_view()),
        }
    }
}
