//! AWS against moto, the EC2 implementation nobody here wrote, started by
//! the tests on loopback (see `common::moto`): listings page by page in every
//! region, throttling honoured, and, through the real `arcadia-drift run` on
//! the local control plane, console changes becoming Drifts and each revert
//! kind ending `Reverted`, with what EC2 received counted. The console (the
//! test's own EC2 client) talks to moto directly; the controller goes
//! through a proxy that counts its requests.

mod common;

use arcadia_drift::api::{
    ANNOTATION_REVERT, ANNOTATION_REVERT_ALLOW_DOWNTIME, ANNOTATION_REVERTED_BY, CloudProvisioned, Drift, DriftPhase,
    DriftStatus, SagaState, StepState,
};
use arcadia_drift::providers::aws::client::{AwsConfig, Ec2};
use arcadia_drift::providers::aws::{Aws, AwsType};
use arcadia_drift::providers::contract::{ErrorClass, Inventory};
use aws_sdk_ec2::types::{InstanceType, IpPermission, IpRange, ResourceType, Tag, TagSpecification};
use common::controller::ControllerProcess;
use common::moto::{CountingProxy, Moto};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::time::Duration;

async fn inventory(url: &str, regions: &[&str]) -> Aws {
    let mut config = AwsConfig::new(regions.iter().map(|r| r.to_string()).collect());
    config.endpoint_url = Some(url.to_owned());
    config.page_size = 5;
    config.backoff = Duration::from_millis(10);
    config.requests_per_second = 1000.0;
    config.burst = 1000.0;
    config.timeout = Duration::from_secs(10);
    config.credentials = Some(aws_sdk_ec2::config::SharedCredentialsProvider::new(common::moto::credentials()));
    Aws::new(Ec2::connect(config).await.unwrap(), AwsType::ALL.to_vec())
}

fn tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
    pairs.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect()
}

/// Launches one instance (one reservation) as the console would.
async fn launch(ec2: &aws_sdk_ec2::Client, instance_type: &str, with: &[(&str, &str)]) -> String {
    let mut run = ec2.run_instances().image_id("ami-12c6146b").instance_type(InstanceType::from(instance_type));
    if !with.is_empty() {
        let spec = TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags(with)));
        run = run.tag_specifications(spec.build());
    }
    let out = run.min_count(1).max_count(1).send().await.unwrap();
    out.instances()[0].instance_id().unwrap().to_owned()
}

async fn instance_of(ec2: &aws_sdk_ec2::Client, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = ec2.describe_instances().instance_ids(id).send().await.unwrap();
    out.reservations()[0].instances()[0].clone()
}

fn rule(port: i32, cidr: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
        .build()
}

#[tokio::test]
async fn lists_every_page_in_every_region_in_terraform_words() {
    let moto = Moto::start().await;
    let proxy = CountingProxy::start(&moto).await;
    let east = moto.console("us-east-1").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(launch(&east, "t3.micro", &[("Name", &format!("web-{i}")), ("env", "prod")]).await);
    }
    let west = launch(&moto.console("eu-west-1").await, "m5.large", &[("Name", "db")]).await;
    let group = east.create_security_group().group_name("web").description("web servers").send().await.unwrap();
    let group = group.group_id().unwrap().to_owned();
    let split = [rule(22, "10.0.0.0/8"), rule(22, "192.168.0.0/16")];
    east.authorize_security_group_ingress()
        .group_id(&group)
        .set_ip_permissions(Some(split.to_vec()))
        .send()
        .await
        .unwrap();

    let aws = inventory(&proxy.url, &["us-east-1", "eu-west-1"]).await;
    let listing = aws.list("instance").await.unwrap();
    let mut listed: Vec<&str> = listing.items.iter().map(|i| i.id.as_str()).collect();
    listed.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).chain([west.as_str()]).collect();
    expected.sort();
    assert_eq!(listed, expected, "every instance of both regions");
    assert!(!listing.short);
    assert_eq!(proxy.seen("DescribeInstances"), 3, "two pages of five in us-east-1, one in eu-west-1");

    let db = listing.items.iter().find(|i| i.id == west).unwrap();
    assert_eq!(db.status.region.as_deref(), Some("eu-west-1"));
    assert_eq!(db.status.size.as_deref(), Some("m5.large"));
    assert_eq!(db.status.name.as_deref(), Some("db"));
    let attrs = db.status.attrs.as_ref().unwrap();
    assert_eq!(attrs.get("instance_type"), Some(json!("m5.large")));
    assert_eq!(attrs.get("ami"), Some(json!("ami-12c6146b")));
    assert!(attrs.get("private_ip").is_some() && attrs.get("subnet_id").is_some() && attrs.get("vpc_id").is_some());

    let groups = aws.list("security_group").await.unwrap().items;
    let web = groups.iter().find(|g| g.id == group).expect("the web group");
    assert_eq!(web.status.name.as_deref(), Some("web"));
    assert_eq!(
        web.status.attrs.as_ref().unwrap().get("ingress"),
        Some(json!([
            {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"},
            {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "192.168.0.0/16"},
        ])),
        "one rule per source, in a stable order"
    );
    let volume = east.create_volume().size(20).availability_zone("us-east-1a").send().await.unwrap();
    let volumes = aws.list("volume").await.unwrap().items;
    let listed = volumes.iter().find(|v| v.id == volume.volume_id().unwrap()).expect("the volume");
    assert_eq!(listed.status.attrs.as_ref().unwrap().get("size"), Some(json!(20)));
}

#[tokio::test]
async fn throttling_is_backed_off_and_counted_and_a_throttled_write_changes_nothing() {
    let moto = Moto::start().await;
    let proxy = CountingProxy::start(&moto).await;
    let east = moto.console("us-east-1").await;
    let id = launch(&east, "t3.micro", &[("env", "prod")]).await;
    let aws = inventory(&proxy.url, &["us-east-1"]).await;

    proxy.throttle("DescribeInstances", 2);
    let listing = aws.list("instance").await.expect("a listing after two throttled tries");
    assert_eq!(listing.items.len(), 1);
    assert_eq!(proxy.seen("DescribeInstances"), 3, "two throttled tries and the one answered");
    assert_eq!(aws.budget().requests_sent, 3, "every try counted");

    proxy.throttle("DescribeInstances", 100);
    let error = aws.list("instance").await.expect_err("throttled past every retry");
    assert_eq!((error.class, error.kind), (ErrorClass::Transient, "rate_limited"));
    assert!(error.message.contains("DescribeInstances in us-east-1: RequestLimitExceeded"), "{}", error.message);
    proxy.throttle("DescribeInstances", 0);

    use arcadia_drift::providers::contract::Actuator;
    let call = json!({"Region": "us-east-1", "ResourceId": id, "Tags": {"env": "dev"}});
    let call = arcadia_drift::api::ProviderCall {
        method: "POST".into(),
        path: "/?Action=CreateTags".into(),
        body: call,
        description: "set env".into(),
        waits_for_action: false,
    };
    proxy.throttle("CreateTags", 1);
    let error = aws.send(&call, &|| true).await.expect_err("a throttled write");
    assert_eq!(error.class, ErrorClass::Transient, "refused before anything happened: {}", error.message);
    assert_eq!(proxy.seen("CreateTags"), 1, "a write is never retried by the client");
    let live = instance_of(&east, &id).await;
    assert_eq!(live.tags()[0].value(), Some("prod"), "nothing changed");
    aws.send(&call, &|| true).await.expect("sent once the throttling stops");
    assert_eq!(instance_of(&east, &id).await.tags()[0].value(), Some("dev"));
}

#[tokio::test]
async fn a_gone_instance_reads_as_none_and_an_unreachable_ec2_as_an_error() {
    let moto = Moto::start().await;
    let east = moto.console("us-east-1").await;
    let id = launch(&east, "t3.micro", &[]).await;
    let aws = inventory(&moto.url, &["us-east-1"]).await;
    assert!(aws.get("instance", &id).await.unwrap().is_some());
    east.terminate_instances().instance_ids(&id).send().await.unwrap();
    assert_eq!(aws.get("instance", &id).await.unwrap(), None, "a terminated instance is gone");
    assert_eq!(aws.get("instance", "i-0123456789abcdef0").await.unwrap(), None, "EC2's NotFound is gone");
    assert!(!aws.list("instance").await.unwrap().items.iter().any(|i| i.id == id), "terminated ones are not listed");
    let error = aws.list("bucket").await.unwrap_err();
    assert_eq!(error.message, "AWS has no resource type \"bucket\" here; known: instance, volume, security_group");

    let nowhere = inventory("http://127.0.0.1:9", &["us-east-1"]).await;
    let error = nowhere.list("instance").await.unwrap_err();
    assert_eq!((error.class, error.kind), (ErrorClass::Transient, "unreachable"), "{}", error.message);
}

/// A namespace, a moto, and `arcadia-drift run` mirroring it with revert on.
struct Env {
    moto: Moto,
    proxy: CountingProxy,
    ec2: aws_sdk_ec2::Client,
    client: kube::Client,
    ns: String,
    source: String,
}

impl Env {
    async fn new(prefix: &str) -> Env {
        let moto = Moto::start().await;
        let proxy = CountingProxy::start(&moto).await;
        let ec2 = moto.console("us-east-1").await;
        let client = common::client().await;
        let ns = common::namespace(&client, prefix).await;
        Env { moto, proxy, ec2, client, ns, source: format!("aws-{}", common::unique_suffix()) }
    }

    fn controller(&self, types: &str) -> ControllerProcess {
        self.controller_with(types, &[])
    }

    fn controller_with(&self, types: &str, extra: &[&str]) -> ControllerProcess {
        let mut args = vec![
            "--aws-regions",
            "us-east-1",
            "--aws-endpoint-url",
            &self.proxy.url,
            "--aws-types",
            types,
            "--aws-inventory-source",
            &self.source,
            "--inventory-sync-interval",
            "2s",
            "--enable-revert",
        ];
        args.extend_from_slice(extra);
        ControllerProcess::start_with_env(&self.ns, &args, &common::moto::CREDENTIALS)
    }

    async fn provision(&self, name: &str, resource: &str, desired: Value) {
        let body = json!({
            "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": name},
            "spec": {"resourceRef": {"name": resource}, "desired": desired},
        });
        let api: Api<CloudProvisioned> = Api::namespaced(self.client.clone(), &self.ns);
        api.patch(name, &PatchParams::apply("test"), &Patch::Apply(body)).await.unwrap();
    }

    async fn drift(&self, field: &str, what: &str, check: impl Fn(&DriftStatus) -> bool) -> Drift {
        let drifts: Api<Drift> = Api::namespaced(self.client.clone(), &self.ns);
        common::eventually(Duration::from_secs(90), what, || async {
            let all = drifts.list(&ListParams::default()).await.ok()?.items;
            all.into_iter().find(|d| d.spec.field == field && d.status.as_ref().is_some_and(&check))
        })
        .await
    }

    async fn approve(&self, drift: &Drift, downtime: bool) {
        let digest = drift.status.as_ref().and_then(|s| s.revert_plan_digest.clone()).expect("a plan to approve");
        let mut annotations = json!({ANNOTATION_REVERT: digest, ANNOTATION_REVERTED_BY: "alice"});
        if downtime {
            annotations[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
        }
        let drifts: Api<Drift> = Api::namespaced(self.client.clone(), &self.ns);
        let patch = json!({"metadata": {"annotations": annotations}});
        drifts
            .patch(&drift.metadata.name.clone().unwrap(), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    /// Approves the Drift's plan and waits for `Reverted`.
    async fn revert(&self, drift: &Drift, downtime: bool) -> DriftStatus {
        self.approve(drift, downtime).await;
        let field = drift.spec.field.clone();
        let done = self.drift(&field, "Reverted", |s| s.phase == DriftPhase::Reverted).await;
        let status = done.status.unwrap();
        assert_eq!(status.revert.as_ref().map(|r| r.state), Some(SagaState::Succeeded));
        status
    }

    fn claim(&self) -> (&str, &str) {
        ("arcadia-ns", &self.ns)
    }
}

fn actions(plan: &DriftStatus) -> Vec<String> {
    plan.revert_plan.iter().map(|c| c.path.trim_start_matches("/?Action=").to_owned()).collect()
}

#[tokio::test]
async fn changed_tags_become_a_drift_and_are_reverted_key_by_key() {
    let env = Env::new("aws-tags").await;
    let (ck, cv) = env.claim();
    let id = launch(&env.ec2, "t3.micro", &[("Name", "web"), ("env", "prod"), (ck, cv)]).await;
    let desired = json!({"tags": {"Name": "web", "env": "prod", ck: cv}});
    env.provision("web", &format!("aws-instance-{id}"), desired).await;
    let controller = env.controller("instance");

    // The console: env changed, a tag added.
    env.ec2.create_tags().resources(&id).set_tags(Some(tags(&[("env", "dev"), ("debug", "1")]))).send().await.unwrap();
    let open = env
        .drift("tags", "an Open drift of the tags", |s| s.phase == DriftPhase::Open && !s.revert_plan.is_empty())
        .await;
    let status = open.status.clone().unwrap();
    assert_eq!(actions(&status), ["CreateTags", "DeleteTags"]);
    let mirrored: Api<arcadia_drift::api::CloudResource> = Api::all(env.client.clone());
    let mirrored = mirrored.get(&format!("aws-instance-{id}")).await.unwrap();
    assert_eq!((mirrored.spec.provider.as_str(), mirrored.spec.region.as_deref()), ("aws", Some("us-east-1")));
    assert_eq!(status.revert_plan[0].body["Tags"], json!({"env": "prod"}));
    assert_eq!(status.revert_plan[1].body["Keys"], json!(["debug"]));

    env.revert(&open, false).await;
    assert_eq!((env.proxy.seen("CreateTags"), env.proxy.seen("DeleteTags")), (1, 1), "exactly one of each");
    let live = instance_of(&env.ec2, &id).await;
    let mut now: Vec<(String, String)> =
        live.tags().iter().map(|t| (t.key().unwrap().into(), t.value().unwrap().into())).collect();
    now.sort();
    let mut want = vec![("Name".to_string(), "web".to_string()), ("env".into(), "prod".into()), (ck.into(), cv.into())];
    want.sort();
    assert_eq!(now, want);
    // The syncer goes on reading, so the count is compared with what EC2 had received by then.
    let counted = controller.metric("arcadia_drift_provider_requests_total{provider=\"aws\"}") as u64;
    let received: u64 = env.proxy.all_seen().values().sum();
    assert!(counted > 0 && counted <= received, "requests counted under provider=aws: {counted} of {received}");
}

#[tokio::test]
async fn a_changed_instance_type_is_reverted_through_stop_modify_start() {
    let env = Env::new("aws-type").await;
    let (ck, cv) = env.claim();
    let id = launch(&env.ec2, "t3.micro", &[(ck, cv)]).await;
    env.provision("app", &format!("aws-instance-{id}"), json!({"instance_type": "t3.micro"})).await;
    let _controller = env.controller("instance");

    env.ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    let large = aws_sdk_ec2::types::AttributeValue::builder().value("t3.large").build();
    env.ec2.modify_instance_attribute().instance_id(&id).instance_type(large).send().await.unwrap();
    env.ec2.start_instances().instance_ids(&id).send().await.unwrap();

    let open = env
        .drift("instance_type", "an Open drift with a three-call plan", |s| {
            s.phase == DriftPhase::Open && s.revert_plan.len() == 3
        })
        .await;
    let status = open.status.clone().unwrap();
    assert_eq!(actions(&status), ["StopInstances", "ModifyInstanceAttribute", "StartInstances"]);
    assert!(status.revert_note.unwrap_or_default().contains(ANNOTATION_REVERT_ALLOW_DOWNTIME));
    let before =
        (env.proxy.seen("StopInstances"), env.proxy.seen("ModifyInstanceAttribute"), env.proxy.seen("StartInstances"));
    env.revert(&open, true).await;
    let after =
        (env.proxy.seen("StopInstances"), env.proxy.seen("ModifyInstanceAttribute"), env.proxy.seen("StartInstances"));
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (1, 1, 1), "each call exactly once");
    let live = instance_of(&env.ec2, &id).await;
    assert_eq!(live.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert_eq!(live.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"), "started again");
}

#[tokio::test]
async fn changed_security_group_rules_are_authorized_and_revoked_one_by_one() {
    let env = Env::new("aws-sg").await;
    let (ck, cv) = env.claim();
    let group = env.ec2.create_security_group().group_name("web").description("web").send().await.unwrap();
    let group = group.group_id().unwrap().to_owned();
    env.ec2.create_tags().resources(&group).set_tags(Some(tags(&[(ck, cv)]))).send().await.unwrap();
    env.ec2
        .authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(rule(22, "10.0.0.0/8"))
        .send()
        .await
        .unwrap();
    let ssh = json!({"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"});
    env.provision("web-sg", &format!("aws-security-group-{group}"), json!({"ingress": [ssh]})).await;
    let _controller = env.controller("security_group");

    // The console: SSH opened to the world, the office range revoked.
    env.ec2
        .authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(rule(22, "0.0.0.0/0"))
        .send()
        .await
        .unwrap();
    env.ec2
        .revoke_security_group_ingress()
        .group_id(&group)
        .ip_permissions(rule(22, "10.0.0.0/8"))
        .send()
        .await
        .unwrap();
    let open = env
        .drift("ingress", "an Open drift of the ingress rules", |s| {
            s.phase == DriftPhase::Open && s.revert_plan.len() == 2
        })
        .await;
    let status = open.status.clone().unwrap();
    assert_eq!(actions(&status), ["AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"]);
    assert_eq!(status.revert_plan[0].body["Rule"], ssh);

    env.revert(&open, false).await;
    let sent = (env.proxy.seen("AuthorizeSecurityGroupIngress"), env.proxy.seen("RevokeSecurityGroupIngress"));
    assert_eq!(sent, (1, 1), "one call per rule, once each");
    let live = env.ec2.describe_security_groups().group_ids(&group).send().await.unwrap();
    let rules = live.security_groups()[0].ip_permissions();
    let cidrs: Vec<&str> = rules.iter().flat_map(|p| p.ip_ranges()).filter_map(|r| r.cidr_ip()).collect();
    assert_eq!(cidrs, ["10.0.0.0/8"], "the group kept, its rules the desired ones");
}

#[tokio::test]
async fn a_volume_grows_back_and_a_shrink_is_refused() {
    let env = Env::new("aws-volume").await;
    let (ck, cv) = env.claim();
    let spec =
        TagSpecification::builder().resource_type(ResourceType::Volume).set_tags(Some(tags(&[(ck, cv)]))).build();
    let small = env
        .ec2
        .create_volume()
        .size(20)
        .availability_zone("us-east-1a")
        .tag_specifications(spec.clone())
        .send()
        .await
        .unwrap();
    let big =
        env.ec2.create_volume().size(80).availability_zone("us-east-1a").tag_specifications(spec).send().await.unwrap();
    let (small, big) = (small.volume_id().unwrap().to_owned(), big.volume_id().unwrap().to_owned());
    env.provision("data", &format!("aws-volume-{small}"), json!({"size": 40})).await;
    env.provision("logs", &format!("aws-volume-{big}"), json!({"size": 40})).await;
    let _controller = env.controller("volume");

    let refused = env
        .drift("size", "the shrink's drift, with why no plan", |s| {
            s.revert_note.as_deref().is_some_and(|n| n.contains("can only grow"))
        })
        .await;
    assert!(refused.status.unwrap().revert_plan.is_empty());
    let grow = env.drift("size", "the grow's drift", |s| s.phase == DriftPhase::Open && s.revert_plan.len() == 1).await;
    assert_eq!(
        grow.status.as_ref().unwrap().revert_plan[0].body,
        json!({"Region": "us-east-1", "VolumeId": small, "Size": 40})
    );
    env.revert(&grow, false).await;
    assert_eq!(env.proxy.seen("ModifyVolume"), 1, "one ModifyVolume, for the grow only");
    let live = env.ec2.describe_volumes().volume_ids(&small).send().await.unwrap();
    assert_eq!(live.volumes()[0].size(), Some(40));
}

#[tokio::test]
async fn an_unclaimed_instance_is_never_reverted() {
    let env = Env::new("aws-unclaimed").await;
    let id = launch(&env.ec2, "t3.micro", &[("env", "prod")]).await;
    env.provision("web", &format!("aws-instance-{id}"), json!({"tags": {"env": "prod"}})).await;
    let _controller = env.controller("instance");
    env.ec2.create_tags().resources(&id).set_tags(Some(tags(&[("env", "dev")]))).send().await.unwrap();
    let open = env.drift("tags", "an Open drift", |s| s.phase == DriftPhase::Open && !s.revert_plan.is_empty()).await;
    env.approve(&open, false).await;
    let refused = env
        .drift("tags", "a refusal naming the claim", |s| {
            s.message.as_deref().is_some_and(|m| m.contains("revert refused"))
        })
        .await;
    let message = refused.status.unwrap().message.unwrap();
    assert!(message.contains(&format!("arcadia-ns={}", env.ns)), "{message}");
    assert_eq!(env.proxy.seen("CreateTags"), 0, "nothing sent");
    assert_eq!(instance_of(&env.ec2, &id).await.tags()[0].value(), Some("dev"));
    drop(env.moto);
}

#[test]
fn the_moto_the_tests_install_is_the_one_versions_sh_names() {
    let versions = std::fs::read_to_string(common::repo_root().join("scripts/versions.sh")).unwrap();
    let line = versions.lines().find(|l| l.starts_with("MOTO_VERSION=")).expect("MOTO_VERSION in scripts/versions.sh");
    let named = line.trim_start_matches("MOTO_VERSION=").split_whitespace().next().unwrap();
    assert_eq!(named, common::moto::MOTO_VERSION);
}

/// A claimed instance running as t3.large, desired as t3.micro.
async fn resized_instance(env: &Env) -> String {
    let (ck, cv) = env.claim();
    let id = launch(&env.ec2, "t3.large", &[(ck, cv)]).await;
    env.provision("app", &format!("aws-instance-{id}"), json!({"instance_type": "t3.micro"})).await;
    id
}

async fn open_resize(env: &Env) -> Drift {
    env.drift("instance_type", "an Open drift with a three-call plan", |s| {
        s.phase == DriftPhase::Open && s.revert_plan.len() == 3
    })
    .await
}

fn counts(env: &Env) -> [u64; 3] {
    ["StopInstances", "ModifyInstanceAttribute", "StartInstances"].map(|a| env.proxy.seen(a))
}

/// The grow is carried out but its answer never arrives in time: the saga
/// finds the volume's modification instead of modifying it twice.
#[tokio::test]
async fn a_grow_whose_answer_is_lost_is_adopted_not_sent_again() {
    let env = Env::new("aws-lost-answer").await;
    let (ck, cv) = env.claim();
    let spec =
        TagSpecification::builder().resource_type(ResourceType::Volume).set_tags(Some(tags(&[(ck, cv)]))).build();
    let volume =
        env.ec2.create_volume().size(20).availability_zone("us-east-1a").tag_specifications(spec).send().await.unwrap();
    let volume = volume.volume_id().unwrap().to_owned();
    env.provision("data", &format!("aws-volume-{volume}"), json!({"size": 40})).await;
    // Longer than any request timeout: the answer is lost whatever the client waits.
    env.proxy.hold_next_answer("ModifyVolume", Duration::from_secs(30));
    let _controller = env.controller_with("volume", &["--aws-request-timeout", "2s"]);
    let open = env.drift("size", "an Open drift", |s| s.phase == DriftPhase::Open && s.revert_plan.len() == 1).await;
    let status = env.revert(&open, false).await;
    assert_eq!(env.proxy.seen("ModifyVolume"), 1, "one ModifyVolume in all");
    let step = &status.revert.unwrap().steps[0];
    assert_eq!(step.handle.as_deref(), Some(format!("us-east-1/{volume}/size/40").as_str()), "adopted by its handle");
    let live = env.ec2.describe_volumes().volume_ids(&volume).send().await.unwrap();
    assert_eq!(live.volumes()[0].size(), Some(40));
}

/// The modify is refused for good after the stop: the saga ends RevertFailed
/// and starts the instance again, each call sent once.
#[tokio::test]
async fn a_refused_modify_ends_revert_failed_with_the_instance_started_again() {
    let env = Env::new("aws-refused").await;
    let id = resized_instance(&env).await;
    env.proxy.refuse_next("ModifyInstanceAttribute", "UnauthorizedOperation");
    let _controller = env.controller("instance");
    let open = open_resize(&env).await;
    env.approve(&open, true).await;
    let failed = env.drift("instance_type", "RevertFailed", |s| s.phase == DriftPhase::RevertFailed).await;
    let status = failed.status.unwrap();
    assert!(status.message.as_deref().unwrap_or_default().contains("UnauthorizedOperation"), "{:?}", status.message);
    let states: Vec<(StepState, bool)> =
        status.revert.unwrap().steps.iter().map(|s| (s.state, s.compensation)).collect();
    assert_eq!(
        states,
        [
            (StepState::Completed, false),
            (StepState::Failed, false),
            (StepState::Skipped, false),
            (StepState::Completed, true)
        ]
    );
    assert_eq!(counts(&env), [1, 1, 1], "stop, the refused modify, the compensating start");
    let live = instance_of(&env.ec2, &id).await;
    assert_eq!(live.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"), "started again");
    assert_eq!(live.instance_type().map(|t| t.as_str()), Some("t3.large"), "nothing else changed");
}

/// Killed after EC2 carried out the stop and before its answer came back:
/// the next controller finds the instance stopping or stopped and goes on,
/// with no second stop.
#[tokio::test]
async fn a_controller_killed_after_the_stop_resumes_without_a_second_stop() {
    let env = Env::new("aws-killed").await;
    let id = resized_instance(&env).await;
    env.proxy.hold_next_answer("StopInstances", Duration::from_secs(60));
    let mut first = env.controller("instance");
    let open = open_resize(&env).await;
    env.approve(&open, true).await;
    common::eventually(Duration::from_secs(60), "the stop carried out by EC2", || async {
        let state = instance_of(&env.ec2, &id).await.state()?.name()?.as_str().to_owned();
        (env.proxy.seen("StopInstances") == 1 && ["stopping", "stopped"].contains(&state.as_str())).then_some(())
    })
    .await;
    first.kill();
    let _second = env.controller("instance");
    let done = env.drift("instance_type", "Reverted after the restart", |s| s.phase == DriftPhase::Reverted).await;
    assert_eq!(done.status.unwrap().revert.map(|r| r.state), Some(SagaState::Succeeded));
    assert_eq!(counts(&env), [1, 1, 1], "each call exactly once across both controllers");
    let live = instance_of(&env.ec2, &id).await;
    assert_eq!(live.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert_eq!(live.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
}

#[tokio::test]
async fn without_credentials_a_request_fails_saying_so_and_nothing_is_sent() {
    let moto = Moto::start().await;
    let proxy = CountingProxy::start(&moto).await;
    let mut config = AwsConfig::new(vec!["us-east-1".into()]);
    config.endpoint_url = Some(proxy.url.clone());
    config.timeout = Duration::from_secs(10);
    config.credentials = Some(aws_sdk_ec2::config::SharedCredentialsProvider::new(common::moto::NoCredentials));
    let aws = Aws::new(Ec2::connect(config).await.unwrap(), AwsType::ALL.to_vec());
    let error = aws.list("instance").await.expect_err("no credentials anywhere");
    assert_eq!((error.class, error.kind), (ErrorClass::Transient, "credentials"), "{}", error.message);
    assert!(error.message.starts_with("EC2 DescribeInstances in us-east-1: no AWS credentials ("), "{}", error.message);
    assert!(!error.message.contains("Headers {"), "words, not a debug dump: {}", error.message);
    assert!(error.message.contains("no identity on this machine"), "the chain's own words: {}", error.message);
    assert!(proxy.all_seen().is_empty(), "nothing reached EC2");
}
