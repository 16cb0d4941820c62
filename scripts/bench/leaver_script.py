#!/usr/bin/env python3
"""The leaver close-out a team scripts today, one call at a time (boto3 + hvac): the comparison of
the leaver benchmark (benches/leaver_speed.rs, docs/performance.md).

It reaches the end state one `closeout apply` of the leaver playbook leaves for the benchmark's
leaver (scripts/bench/leaver_world.py), then reads it back:

AWS (IAM user `alice`, her email tags secrets she owns):
  revoke her sessions (inline deny on aws:TokenIssueTime older than now, the policy Closeout
  puts), delete her login profile, deactivate her access keys, SSH keys and signing
  certificates (Closeout deletes them only after a 7-day grace period), rotate every secret she
  can read: a new random value for each secret tagged owner = her email or whose resource policy
  names her user (ListSecrets, then GetResourcePolicy of each other secret: there is no
  server-side filter on a resource policy).
Vault (entity `alice.nguyen`, userpass login of the same name):
  disable the entity, delete the userpass login, revoke every token bound to her entity (LIST
  the accessors, look each up, revoke hers), rotate every KV v2 secret she can read (the paths
  of her entity's ACL policies) or owns (custom metadata owner = her email: every key's metadata
  read), writing a new version with new values.
Then reads back every one of those and exits non-zero if anything is not as it should be.

It knows what a team knows: her IAM user name, her Vault entity name and her email. One call
at a time, no threads.

With --tokens-only (the bench's accessor-scan case, CLOSEOUT_BENCH_ACCESSORS) it runs only the
sequential token loop: LIST the accessors, look each up, revoke the leaver's, read them back.

Environment: AWS_ENDPOINT_URL, VAULT_ADDR, VAULT_TOKEN (the benchmark points them at the latency
proxies). Prints one JSON line: {"calls": {...}, "closed": true}.
"""

import fnmatch
import json
import os
import secrets
import sys
import datetime

import boto3
import hvac
from botocore.exceptions import ClientError

USER = "alice"
ENTITY = "alice.nguyen"
EMAIL = "alice.nguyen@example.com"
IDENTITY = "E1001"
DENY_POLICY = "closeout-revoke-sessions"
KV_MOUNT = "secret"


def new_value():
    return secrets.token_urlsafe(32)


def main():
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    iam = session.client("iam", endpoint_url=endpoint)
    sm = session.client("secretsmanager", endpoint_url=endpoint)
    v = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    wrong = []
    if "--tokens-only" in sys.argv[1:]:
        tokens_only(v)
        return

    # ---- AWS ------------------------------------------------------------------------------
    user_arn = iam.get_user(UserName=USER)["User"]["Arn"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    iam.put_user_policy(
        UserName=USER,
        PolicyName=DENY_POLICY,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Action": "*",
                        "Resource": "*",
                        "Condition": {"DateLessThan": {"aws:TokenIssueTime": now}},
                    }
                ],
            }
        ),
    )
    try:
        iam.delete_login_profile(UserName=USER)
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchEntity":
            raise
    keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]]
    for key in keys:
        iam.update_access_key(UserName=USER, AccessKeyId=key, Status="Inactive")
    ssh = [k["SSHPublicKeyId"] for k in iam.list_ssh_public_keys(UserName=USER)["SSHPublicKeys"]]
    for key in ssh:
        iam.update_ssh_public_key(UserName=USER, SSHPublicKeyId=key, Status="Inactive")
    certs = [c["CertificateId"] for c in iam.list_signing_certificates(UserName=USER)["Certificates"]]
    for cert in certs:
        iam.update_signing_certificate(UserName=USER, CertificateId=cert, Status="Inactive")

    rotated = []
    token = None
    while True:
        page = sm.list_secrets(MaxResults=100, **({"NextToken": token} if token else {}))
        for s in page.get("SecretList", []):
            tags = {t["Key"]: t["Value"] for t in s.get("Tags", [])}
            mine = tags.get("owner") in (EMAIL, IDENTITY)
            if not mine and "owner" not in tags:
                policy = sm.get_resource_policy(SecretId=s["ARN"]).get("ResourcePolicy") or ""
                mine = user_arn in policy
            if mine:
                sm.put_secret_value(SecretId=s["ARN"], SecretString=new_value())
                rotated.append(s["ARN"])
        token = page.get("NextToken")
        if not token:
            break

    # ---- Vault ----------------------------------------------------------------------------
    entity = v.secrets.identity.read_entity_by_name(ENTITY)["data"]
    v.write(f"identity/entity/id/{entity['id']}", disabled=True)
    v.auth.userpass.delete_user(ENTITY)
    revoked = []
    for accessor in v.auth.token.list_accessors()["data"]["keys"]:
        try:
            info = v.auth.token.lookup_accessor(accessor)["data"]
        except hvac.exceptions.InvalidRequest:
            continue  # expired or revoked meanwhile
        if info.get("entity_id") == entity["id"]:
            v.auth.token.revoke_accessor(accessor)
            revoked.append(accessor)

    # The KV paths her entity's policies grant read on (no groups, no token policies in this
    # world; a real script would follow those too).
    patterns = []
    for name in entity.get("policies") or []:
        rules = v.sys.read_acl_policy(name)["data"]["policy"]
        for line in rules.splitlines():
            line = line.strip()
            if line.startswith("path ") and f'"{KV_MOUNT}/data/' in line:
                patterns.append(line.split('"')[1][len(KV_MOUNT) + len("/data/"):])

    def walk(prefix):
        for key in v.secrets.kv.v2.list_secrets(path=prefix, mount_point=KV_MOUNT)["data"]["keys"]:
            if key.endswith("/"):
                yield from walk(prefix + key)
            else:
                yield prefix + key

    kv_rotated = []
    for path in walk(""):
        readable = any(fnmatch.fnmatch(path, p.replace("+", "*")) for p in patterns)
        if not readable:
            meta = v.secrets.kv.v2.read_secret_metadata(path=path, mount_point=KV_MOUNT)["data"]
            readable = (meta.get("custom_metadata") or {}).get("owner") in (EMAIL, IDENTITY)
        if readable:
            current = v.secrets.kv.v2.read_secret_version(
                path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
            )["data"]["data"]
            v.secrets.kv.v2.create_or_update_secret(
                path=path, secret={k: new_value() for k in current}, mount_point=KV_MOUNT
            )
            kv_rotated.append(path)

    # ---- read back --------------------------------------------------------------------------
    for k in iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]:
        if k["Status"] != "Inactive":
            wrong.append(f"access key {k['AccessKeyId']} still active")
    try:
        iam.get_login_profile(UserName=USER)
        wrong.append("login profile still there")
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchEntity":
            raise
    for k in iam.list_ssh_public_keys(UserName=USER)["SSHPublicKeys"]:
        if k["Status"] != "Inactive":
            wrong.append(f"SSH key {k['SSHPublicKeyId']} still active")
    for c in iam.list_signing_certificates(UserName=USER)["Certificates"]:
        if c["Status"] != "Inactive":
            wrong.append(f"signing certificate {c['CertificateId']} still active")
    if DENY_POLICY not in iam.list_user_policies(UserName=USER)["PolicyNames"]:
        wrong.append("no session-revoking deny")
    for arn in rotated:
        versions = sm.list_secret_version_ids(SecretId=arn)["Versions"]
        if len(versions) < 2:
            wrong.append(f"secret {arn} not rotated")
    if not v.secrets.identity.read_entity(entity["id"])["data"].get("disabled"):
        wrong.append("entity not disabled")
    try:
        v.auth.userpass.read_user(ENTITY)
        wrong.append("userpass login still there")
    except hvac.exceptions.InvalidPath:
        pass
    for accessor in revoked:
        try:
            v.auth.token.lookup_accessor(accessor)
            wrong.append(f"token {accessor} still valid")
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            pass
    for path in kv_rotated:
        meta = v.secrets.kv.v2.read_secret_metadata(path=path, mount_point=KV_MOUNT)["data"]
        if meta["current_version"] < 2:
            wrong.append(f"KV {path} not rotated")

    print(
        json.dumps(
            {
                "closed": not wrong,
                "rotated_aws_secrets": len(rotated),
                "revoked_tokens": len(revoked),
                "rotated_kv": len(kv_rotated),
                "deactivated": len(keys) + len(ssh) + len(certs),
            }
        )
    )
    if wrong:
        for w in wrong:
            print(f"leaver_script: not closed: {w}", file=sys.stderr)
        sys.exit(2)


def tokens_only(v):
    """The accessor-scan case: the sequential lookup loop alone (LIST the accessors, look each up,
    revoke the leaver's), then her revoked tokens read back."""
    entity = v.secrets.identity.read_entity_by_name(ENTITY)["data"]
    revoked = []
    accessors = v.auth.token.list_accessors()["data"]["keys"]
    for accessor in accessors:
        try:
            info = v.auth.token.lookup_accessor(accessor)["data"]
        except hvac.exceptions.InvalidRequest:
            continue
        if info.get("entity_id") == entity["id"]:
            v.auth.token.revoke_accessor(accessor)
            revoked.append(accessor)
    still = []
    for accessor in revoked:
        try:
            v.auth.token.lookup_accessor(accessor)
            still.append(accessor)
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            pass
    print(json.dumps({"closed": not still, "accessors": len(accessors), "revoked_tokens": len(revoked)}))
    if still:
        print(f"leaver_script: tokens still valid: {still}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
