"""The AWS console of `scripts/demo aws`: what a person does by hand, on the
local moto (boto3 comes with it).

    console.py URL launch           launches web-aws (t3.micro), prints its id
    console.py URL resize ID        stops it, makes it a t3.large, starts it, retags env
"""
import sys

import boto3

url, command = sys.argv[1], sys.argv[2]
ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="demo", aws_secret_access_key="demo")
if command == "launch":
    tags = [{"Key": "Name", "Value": "web-aws"}, {"Key": "env", "Value": "prod"},
            {"Key": "arcadia-ns", "Value": "default"}]
    answer = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                               TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    print(answer["Instances"][0]["InstanceId"])
elif command == "resize":
    instance = sys.argv[3]
    ec2.stop_instances(InstanceIds=[instance])
    ec2.modify_instance_attribute(InstanceId=instance, InstanceType={"Value": "t3.large"})
    ec2.start_instances(InstanceIds=[instance])
    ec2.create_tags(Resources=[instance], Tags=[{"Key": "env", "Value": "staging"}])
else:
    sys.exit(f"unknown command {command!r}: launch or resize")
