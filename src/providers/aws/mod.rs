//! Amazon Web Services: EC2 instances, EBS volumes and security groups in
//! the regions of one account, through the official SDK ([`client`]). The
//! objects map into CloudResource status in [`model`]; [`inventory`] lists
//! and reads them, [`plan`] makes the calls that revert a field (as
//! [`calls::Ec2Call`]s) and [`actuator`] sends and follows them.

pub mod actuator;
pub mod calls;
pub mod client;
pub mod flags;
pub mod inventory;
pub mod model;
pub mod plan;

pub use flags::Flags;
pub use inventory::Aws;

/// The name `CloudResource.spec.provider` carries for AWS.
pub const NAME: &str = "aws";

/// How AWS is configured, for messages that need a provider.
pub const CREDENTIALS: &str = "AWS regions (--aws-regions) and credentials from the standard chain (IRSA, EKS Pod Identity, AWS_* variables, a profile or instance metadata) allowed the revert policy in docs/providers/aws.md";

/// AWS had no request metrics before `provider_*`.
pub const LEGACY_METRIC_PREFIX: Option<&str> = None;

/// AWS's planner, as the registry holds it.
pub static PLANNER: plan::AwsPlanner = plan::AwsPlanner;

/// Whether `name` reads as an AWS region's name (`us-east-1`): a flag and a
/// recorded call are both checked with it.
pub fn is_region_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A resource type the syncer mirrors, in Terraform's words without `aws_`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AwsType {
    Instance,
    Volume,
    SecurityGroup,
}

impl AwsType {
    pub const ALL: [AwsType; 3] = [AwsType::Instance, AwsType::Volume, AwsType::SecurityGroup];

    pub fn word(self) -> &'static str {
        match self {
            AwsType::Instance => "instance",
            AwsType::Volume => "volume",
            AwsType::SecurityGroup => "security_group",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.word() == word)
    }
}
