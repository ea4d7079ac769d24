//! AWS's command-line flags, flattened into `arcadia-drift run`, and the
//! [`Setup`] they configure. Credentials are not flags: the SDK's standard
//! chain finds them (IRSA or EKS Pod Identity in a cluster).

use super::client::{AwsConfig, Ec2};
use super::{Aws, AwsType, NAME};
use crate::providers::contract::{Built, Common, ProviderError, Setup, SetupError};
use crate::runtime::duration::parse_duration;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
#[group(id = "aws")]
pub struct Flags {
    /// The AWS regions to mirror (comma-separated, one account per
    /// controller); when set, `run` syncs EC2 instances, EBS volumes and
    /// security groups into CloudResource objects. Credentials come from the
    /// standard chain: IRSA or EKS Pod Identity, AWS_* variables, a profile,
    /// instance metadata.
    #[arg(long, value_delimiter = ',', value_name = "REGION")]
    pub aws_regions: Vec<String>,
    /// Resource types to mirror from AWS (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "instance,volume,security_group")]
    pub aws_types: Vec<String>,
    /// Another EC2 endpoint than AWS's own, e.g. a VPC endpoint (of the one region in --aws-regions).
    #[arg(long, value_name = "URL")]
    pub aws_endpoint_url: Option<String>,
    /// Name of the AWS inventory source: the `arcadia.cloud/source` label of
    /// the CloudResources it writes. Use one per AWS account.
    #[arg(long, default_value = "aws")]
    pub aws_inventory_source: String,
    /// Sustained EC2 requests per hour this process allows itself (EC2
    /// refills its own bucket for Describe calls at 20 a second per region).
    #[arg(long, default_value_t = 36_000)]
    pub aws_requests_per_hour: u32,
    /// How long one EC2 request may take, retries included. A write with no
    /// answer by then may have happened: a revert looks before sending it again.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub aws_request_timeout: Duration,
}

/// AWS as the flags configured it.
#[derive(Clone, Debug)]
pub struct AwsSetup {
    pub config: AwsConfig,
    pub types: Vec<AwsType>,
    pub source: String,
}

impl Flags {
    /// The setup these flags describe; `None` without regions.
    pub fn configure(&self, _common: Common) -> Result<Option<Arc<dyn Setup>>, SetupError> {
        let regions: Vec<String> = self.aws_regions.iter().map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()).collect();
        if regions.is_empty() {
            return Ok(None);
        }
        if let Some(bad) = regions.iter().find(|r| !super::is_region_name(r)) {
            let why = format!("{bad:?} is not a region name such as us-east-1");
            return Err(SetupError::BadValue { flag: "--aws-regions", why });
        }
        let types = self
            .aws_types
            .iter()
            .map(|w| {
                AwsType::parse(w.trim()).ok_or_else(|| {
                    let known: Vec<_> = AwsType::ALL.iter().map(|t| t.word()).collect();
                    let why = format!("unknown type {w:?}; known: {}", known.join(", "));
                    SetupError::BadValue { flag: "--aws-types", why }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.aws_endpoint_url.is_some() && regions.len() > 1 {
            return Err(SetupError::OneEndpointManyRegions(regions.len()));
        }
        let mut config = AwsConfig::new(regions);
        config.endpoint_url = self.aws_endpoint_url.clone();
        config.requests_per_second = f64::from(self.aws_requests_per_hour.max(1)) / 3600.0;
        config.timeout = self.aws_request_timeout;
        Ok(Some(Arc::new(AwsSetup { config, types, source: self.aws_inventory_source.clone() })))
    }
}

impl Setup for AwsSetup {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn feed_interval(&self) -> Option<Duration> {
        None
    }

    fn endpoint(&self) -> String {
        let regions = self.config.regions.join(", ");
        match &self.config.endpoint_url {
            Some(url) => format!("EC2 at {url} ({regions})"),
            None => format!("EC2 in {regions}"),
        }
    }

    fn build(&self) -> BoxFuture<'_, Result<Built, ProviderError>> {
        async move {
            let account = Arc::new(Aws::new(Ec2::connect(self.config.clone()).await?, self.types.clone()));
            Ok(Built { inventory: account.clone(), actuator: account })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        aws: Flags,
    }

    fn configure(args: &[&str]) -> Result<Option<Arc<dyn Setup>>, String> {
        let command = Command::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
        command.aws.configure(Common { revert: false }).map_err(|e| e.to_string())
    }

    #[test]
    fn without_regions_aws_is_off_and_bad_values_say_what_is_wrong() {
        assert!(configure(&[]).unwrap().is_none());
        let two = configure(&["--aws-regions", "us-east-1,eu-west-1"]).unwrap().unwrap();
        assert_eq!(two.endpoint(), "EC2 in us-east-1, eu-west-1");
        assert_eq!(two.source(), "aws");
        let bad = configure(&["--aws-regions", "us-east-1,US East"]).err().unwrap();
        assert_eq!(bad, "--aws-regions: \"US East\" is not a region name such as us-east-1");
        let bad = configure(&["--aws-regions", "us-east-1", "--aws-types", "instance,bucket"]).err().unwrap();
        assert_eq!(bad, "--aws-types: unknown type \"bucket\"; known: instance, volume, security_group");
        let bad = configure(&["--aws-regions", "us-east-1,eu-west-1", "--aws-endpoint-url", "http://vpce"]).err().unwrap();
        assert!(bad.starts_with("--aws-endpoint-url names one endpoint"), "{bad}");
    }
}
