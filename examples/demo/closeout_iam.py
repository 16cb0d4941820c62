#!/usr/bin/env python3
"""Create the IAM user Closeout itself runs as in the demo, and print its credentials as shell
`export` lines.

A real deployment gives Closeout its own principal with the permissions its playbooks need;
`closeout doctor` reads that principal's policies and names anything missing. This script does
the same against moto: the user `closeout-automation` (owned by the CTO, so reconcile does not
report it as an unclaimed account) with one inline policy granting the IAM, STS, Secrets
Manager and IAM Identity Center (sso, identitystore) actions the shipped playbooks use.

Usage:
    eval "$(AWS_ENDPOINT_URL=http://127.0.0.1:4566 .venv/bin/python examples/demo/closeout_iam.py)"

Only talks to an emulator (AWS_ENDPOINT_URL must point at 127.0.0.1 or localhost).
"""

import json
import os
import sys
import urllib.parse

import boto3

USER = "closeout-automation"
OWNER = "frank.osei@example.com"

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ResolveAndAct",
            "Effect": "Allow",
            "Action": ["iam:*", "sts:GetCallerIdentity", "secretsmanager:*", "sso:*", "identitystore:*"],
            "Resource": "*",
        }
    ],
}


def main():
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    host = urllib.parse.urlparse(endpoint).hostname
    if host not in ("127.0.0.1", "localhost"):
        sys.exit(f"closeout_iam: refusing to run against {endpoint!r}: set AWS_ENDPOINT_URL to the emulator")
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    iam.create_user(UserName=USER, Tags=[{"Key": "owner", "Value": OWNER}])
    iam.put_user_policy(UserName=USER, PolicyName="closeout", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    print(f"export AWS_ACCESS_KEY_ID={key['AccessKeyId']}")
    print(f"export AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}")


if __name__ == "__main__":
    main()
