#!/usr/bin/env python3
"""Seed, and check afterwards, the world of the leaver benchmark (benches/leaver_speed.rs,
docs/performance.md): one leaver with N credentials among M other principals, on a fresh moto
(AWS) and a fresh OpenBao (Vault) dev server.

The leaver is Alice Nguyen (E1001 in examples/demo/hr.csv, status terminated): IAM user `alice`
(tag identity = her email) and Vault entity `alice.nguyen` (metadata identity = E1001) with a
userpass login of the same name. Half of her N credentials are on AWS, half on Vault:

- AWS: her console password (login profile), her 2 access keys (IAM allows 2 a user), up to 5
  SSH public keys and 2 signing certificates, the rest Secrets Manager secrets she can read:
  alternately owned (tag owner = her email) and shared with her by a resource policy naming her
  user's ARN.
- Vault: her userpass login, her tokens (the login token and children it created, all bound to
  her entity), the rest KV v2 secrets under `secret/`: alternately owned (custom metadata
  owner = her email, under `secret/owned/`) and readable through the ACL policy
  `bench-alice-read` her entity holds (`secret/data/alice-read/*`).

Each of the M other principals is an IAM user `other-NNNNN` (tag identity, one access key, one
secret it owns) and a Vault entity of the same name (userpass login, one login token, one KV
secret it owns under `secret/people/`). Nothing of theirs is within Alice's reach.

Usage (the bench runs it; emulator addresses are the real ones, not the latency proxies):
    leaver_world.py seed  --n N --m M --manifest FILE [--extra-tokens K]
    leaver_world.py check --manifest FILE [--tokens-only]

`--extra-tokens K` adds K root-created tokens of no entity (the accessor-scan case of the bench:
CLOSEOUT_BENCH_ACCESSORS); `--tokens-only` checks only the tokens (after the lookup loop).

Environment: AWS_ENDPOINT_URL (moto), VAULT_ADDR and VAULT_TOKEN (OpenBao root token).

`seed` writes FILE: what Alice holds (ids, names, accessors, SHA-256 of the seeded secret
values: never a value) and a sample of the others'. `check` reads both emulators back and exits
non-zero, saying what is wrong, unless the leaver is closed the way one `closeout apply` of the
leaver playbook leaves her (its retire stage deletes deactivated credentials only after a 7-day
grace period, so "closed" is: keys, SSH keys and signing certificates Inactive, no login profile,
the session-revoking deny policy on her user, every secret she could read with a new value;
entity disabled, userpass login gone, every token of hers revoked, every KV secret she could read
at a new version) and the others' credentials untouched.
"""

import argparse
import concurrent.futures
import datetime
import hashlib
import json
import os
import secrets
import sys

import boto3
import hvac
import requests
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REGION = "us-east-1"
ALICE_USER = "alice"
ALICE_ENTITY = "alice.nguyen"
ALICE_ID = "E1001"
ALICE_EMAIL = "alice.nguyen@example.com"
READ_POLICY = "bench-alice-read"
# How many other principals are checked untouched (all of them at M = 50).
SAMPLE = 50


def die(message):
    print(f"leaver_world: error: {message}", file=sys.stderr)
    sys.exit(1)


def digest(value):
    return hashlib.sha256(value.encode()).hexdigest()


def value():
    return secrets.token_urlsafe(24)


def split(n):
    """Alice's N credentials: (AWS counts, Vault counts)."""
    aws_n = n // 2
    vault_n = n - aws_n
    rest = max(aws_n - 3, 0)
    ssh = min(5, rest // 3)
    certs = min(2, rest // 5)
    aws = {"login_profile": 1, "access_keys": 2, "ssh_keys": ssh, "signing_certs": certs,
           "secrets": rest - ssh - certs}
    tokens = max(1, vault_n // 4)
    vault = {"userpass": 1, "tokens": tokens, "kv": max(vault_n - 1 - tokens, 0)}
    return aws, vault


def clients():
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or die("AWS_ENDPOINT_URL is not set")
    if not endpoint.startswith("http://127.0.0.1"):
        die("AWS_ENDPOINT_URL must be a loopback emulator")
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    iam = session.client("iam", endpoint_url=endpoint)
    sm = session.client("secretsmanager", endpoint_url=endpoint)
    addr = os.environ.get("VAULT_ADDR") or die("VAULT_ADDR is not set")
    token = os.environ.get("VAULT_TOKEN") or die("VAULT_TOKEN is not set")
    vault = hvac.Client(url=addr, token=token)
    return iam, sm, vault


def ssh_public_key(comment):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{body.decode()} {comment}"


def certificate(common_name):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def seed(n, m, manifest_path, extra_tokens=0):
    iam, sm, v = clients()
    aws_counts, vault_counts = split(n)
    account = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("sts", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).get_caller_identity()["Account"]
    manifest = {"n": n, "m": m, "aws_counts": aws_counts, "vault_counts": vault_counts}

    # --- AWS: Alice -------------------------------------------------------------------------
    alice_arn = iam.create_user(
        UserName=ALICE_USER, Tags=[{"Key": "identity", "Value": ALICE_EMAIL}]
    )["User"]["Arn"]
    iam.create_login_profile(UserName=ALICE_USER, Password=value() + "!Aa1")
    keys = [iam.create_access_key(UserName=ALICE_USER)["AccessKey"]["AccessKeyId"] for _ in range(2)]
    ssh = [
        iam.upload_ssh_public_key(UserName=ALICE_USER, SSHPublicKeyBody=ssh_public_key(f"k{i}"))[
            "SSHPublicKey"
        ]["SSHPublicKeyId"]
        for i in range(aws_counts["ssh_keys"])
    ]
    certs = [
        iam.upload_signing_certificate(UserName=ALICE_USER, CertificateBody=certificate(f"alice{i}"))[
            "Certificate"
        ]["CertificateId"]
        for i in range(aws_counts["signing_certs"])
    ]
    alice_secrets = {}
    for i in range(aws_counts["secrets"]):
        secret_value = value()
        if i % 2 == 0:
            name = f"owned/alice-{i:03}"
            sm.create_secret(
                Name=name, SecretString=secret_value, Tags=[{"Key": "owner", "Value": ALICE_EMAIL}]
            )
        else:
            name = f"shared/alice-{i:03}"
            sm.create_secret(Name=name, SecretString=secret_value)
            sm.put_resource_policy(
                SecretId=name,
                ResourcePolicy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": alice_arn},
                                "Action": "secretsmanager:GetSecretValue",
                                "Resource": "*",
                            }
                        ],
                    }
                ),
            )
        alice_secrets[name] = digest(secret_value)
    manifest["aws"] = {
        "account": account,
        "user": ALICE_USER,
        "access_keys": keys,
        "ssh_keys": ssh,
        "signing_certs": certs,
        "secrets": alice_secrets,
    }

    # --- Vault: Alice -----------------------------------------------------------------------
    v.sys.enable_auth_method("userpass", path="userpass")
    userpass_accessor = v.sys.list_auth_methods()["data"]["userpass/"]["accessor"]
    v.sys.create_or_update_acl_policy(
        READ_POLICY,
        'path "secret/data/alice-read/*" {\n  capabilities = ["read"]\n}\n'
        # Her child tokens (no sudo: only tokens with a subset of her own policies).
        'path "auth/token/create" {\n  capabilities = ["update"]\n}\n',
    )
    password = value()
    v.auth.userpass.create_or_update_user(ALICE_ENTITY, password)
    alice_entity = v.secrets.identity.create_or_update_entity(
        name=ALICE_ENTITY,
        metadata={"identity": ALICE_ID},
        policies=[READ_POLICY],
    )["data"]["id"]
    v.secrets.identity.create_or_update_entity_alias(
        name=ALICE_ENTITY, canonical_id=alice_entity, mount_accessor=userpass_accessor
    )
    kv = {}
    for i in range(vault_counts["kv"]):
        data = {"password": value()}
        if i % 2 == 0:
            path = f"owned/alice-{i:03}"
            v.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point="secret")
            v.secrets.kv.v2.update_metadata(
                path=path, custom_metadata={"owner": ALICE_EMAIL}, mount_point="secret"
            )
        else:
            path = f"alice-read/k-{i:03}"
            v.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point="secret")
        kv[path] = digest(data["password"])
    login = hvac.Client(url=v.url).auth.userpass.login(ALICE_ENTITY, password)["auth"]
    if login.get("entity_id") != alice_entity:
        die("alice.nguyen's userpass login did not map to her entity")
    accessors = [login["accessor"]]
    own = hvac.Client(url=v.url, token=login["client_token"])
    for i in range(vault_counts["tokens"] - 1):
        accessors.append(
            own.auth.token.create(display_name=f"alice-{i}", ttl="8h")["auth"]["accessor"]
        )
    manifest["vault"] = {
        "entity": ALICE_ENTITY,
        "entity_id": alice_entity,
        "userpass": ALICE_ENTITY,
        "token_accessors": accessors,
        "kv": kv,
    }

    # --- the others -------------------------------------------------------------------------
    def other(i):
        name = f"other-{i:05}"
        email = f"{name}@example.com"
        iam.create_user(UserName=name, Tags=[{"Key": "identity", "Value": email}])
        key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
        secret_value = value()
        sm.create_secret(
            Name=f"people/{name}", SecretString=secret_value, Tags=[{"Key": "owner", "Value": email}]
        )
        pw = value()
        v.auth.userpass.create_or_update_user(name, pw)
        entity = v.secrets.identity.create_or_update_entity(
            name=name, metadata={"identity": f"X{i:05}"}
        )["data"]["id"]
        v.secrets.identity.create_or_update_entity_alias(
            name=name, canonical_id=entity, mount_accessor=userpass_accessor
        )
        kv_value = value()
        v.secrets.kv.v2.create_or_update_secret(
            path=f"people/{name}", secret={"password": kv_value}, mount_point="secret"
        )
        v.secrets.kv.v2.update_metadata(
            path=f"people/{name}", custom_metadata={"owner": email}, mount_point="secret"
        )
        accessor = hvac.Client(url=v.url).auth.userpass.login(name, pw)["auth"]["accessor"]
        return {
            "user": name,
            "access_key": key,
            "secret": [f"people/{name}", digest(secret_value)],
            "entity_id": entity,
            "token_accessor": accessor,
            "kv": [f"people/{name}", digest(kv_value)],
        }

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        others = list(pool.map(other, range(m)))
    step = max(1, m // SAMPLE)
    manifest["others"] = others[::step]

    # Tokens of nobody in particular (root-created, no entity): the accessor scan's haystack.
    def token(_):
        v.auth.token.create(policies=["default"], ttl="24h", no_parent=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(token, range(extra_tokens)))
    manifest["extra_tokens"] = extra_tokens

    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)


def status(v, method, path, body=None):
    """The HTTP status of one Vault call (hvac raises or parses; here only the status counts)."""
    return requests.request(
        method, f"{v.url}/v1/{path}", json=body, headers={"X-Vault-Token": v.token}, timeout=30
    ).status_code


def check(manifest_path, tokens_only=False):
    with open(manifest_path) as f:
        manifest = json.load(f)
    iam, sm, v = clients()
    wrong = []
    if tokens_only:
        check_tokens(manifest, v, wrong)
        report(wrong, f"{len(manifest['vault']['token_accessors'])} tokens of the leaver revoked, "
               f"{len(manifest['others'])} other principals' tokens valid")
        return
    aws = manifest["aws"]
    user = aws["user"]

    statuses = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
    for key in aws["access_keys"]:
        if statuses.get(key, "Inactive") != "Inactive":
            wrong.append(f"aws: access key {key} of {user} is {statuses[key]}")
    try:
        iam.get_login_profile(UserName=user)
        wrong.append(f"aws: {user} still has a login profile")
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchEntity":
            raise
    ssh = {k["SSHPublicKeyId"]: k["Status"] for k in iam.list_ssh_public_keys(UserName=user)["SSHPublicKeys"]}
    for key in aws["ssh_keys"]:
        if ssh.get(key, "Inactive") != "Inactive":
            wrong.append(f"aws: SSH key {key} of {user} is {ssh[key]}")
    certs = {c["CertificateId"]: c["Status"] for c in iam.list_signing_certificates(UserName=user)["Certificates"]}
    for cert in aws["signing_certs"]:
        if certs.get(cert, "Inactive") != "Inactive":
            wrong.append(f"aws: signing certificate {cert} of {user} is {certs[cert]}")
    denies = [
        iam.get_user_policy(UserName=user, PolicyName=p)["PolicyDocument"]
        for p in iam.list_user_policies(UserName=user)["PolicyNames"]
    ]
    if not any("TokenIssueTime" in json.dumps(d) for d in denies):
        wrong.append(f"aws: {user} has no deny on aws:TokenIssueTime (sessions not revoked)")
    for name, seeded in aws["secrets"].items():
        # AWSCURRENT asked for explicitly: moto 5.2 answers a GetSecretValue without a stage
        # with the version a PutSecretValue last made current, not the one
        # UpdateSecretVersionStage moved AWSCURRENT to (Closeout promotes that way).
        current = sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"]
        if digest(current) == seeded:
            wrong.append(f"aws: secret {name} was not rotated")

    vault = manifest["vault"]
    entity = v.secrets.identity.read_entity(vault["entity_id"])["data"]
    if not entity.get("disabled"):
        wrong.append(f"vault: entity {vault['entity']} is not disabled")
    if status(v, "GET", f"auth/userpass/users/{vault['userpass']}") != 404:
        wrong.append(f"vault: userpass login {vault['userpass']} still exists")
    for accessor in vault["token_accessors"]:
        if status(v, "POST", "auth/token/lookup-accessor", {"accessor": accessor}) < 400:
            wrong.append(f"vault: token (accessor {accessor}) of {vault['entity']} is still valid")
    for path, seeded in vault["kv"].items():
        data = v.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
        if digest(data["data"]["data"].get("password", "")) == seeded:
            wrong.append(f"vault: KV secret {path} was not rotated")

    for o in manifest["others"]:
        keys = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=o["user"])["AccessKeyMetadata"]}
        if keys.get(o["access_key"]) != "Active":
            wrong.append(f"aws: {o['user']}'s access key was touched")
        name, seeded = o["secret"]
        if digest(sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"]) != seeded:
            wrong.append(f"aws: {name} (not Alice's) was rotated")
        if v.secrets.identity.read_entity(o["entity_id"])["data"].get("disabled"):
            wrong.append(f"vault: entity {o['user']} was disabled")
        if status(v, "POST", "auth/token/lookup-accessor", {"accessor": o["token_accessor"]}) >= 400:
            wrong.append(f"vault: {o['user']}'s token was revoked")
        path, seeded = o["kv"]
        data = v.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
        if digest(data["data"]["data"]["password"]) != seeded:
            wrong.append(f"vault: KV {path} (not Alice's) was rotated")

    report(
        wrong,
        f"{len(aws['access_keys']) + len(aws['ssh_keys']) + len(aws['signing_certs']) + 1 + len(aws['secrets'])} AWS "
        f"and {1 + len(vault['token_accessors']) + len(vault['kv'])} Vault credentials of the leaver; "
        f"{len(manifest['others'])} other principals checked untouched",
    )


def check_tokens(manifest, v, wrong):
    for accessor in manifest["vault"]["token_accessors"]:
        if status(v, "POST", "auth/token/lookup-accessor", {"accessor": accessor}) < 400:
            wrong.append(f"vault: token (accessor {accessor}) of the leaver is still valid")
    for o in manifest["others"]:
        if status(v, "POST", "auth/token/lookup-accessor", {"accessor": o["token_accessor"]}) >= 400:
            wrong.append(f"vault: {o['user']}'s token was revoked")


def report(wrong, closed):
    if wrong:
        print("leaver_world: the end state is wrong:", file=sys.stderr)
        for w in wrong:
            print(f"  - {w}", file=sys.stderr)
        sys.exit(2)
    print(f"leaver_world: closed: {closed}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--m", type=int, required=True)
    s.add_argument("--manifest", required=True)
    s.add_argument("--extra-tokens", type=int, default=0,
                   help="root-created tokens of no entity, for the accessor-scan case")
    c = sub.add_parser("check")
    c.add_argument("--manifest", required=True)
    c.add_argument("--tokens-only", action="store_true",
                   help="check only the Vault tokens (after the sequential lookup loop)")
    args = parser.parse_args()
    if args.command == "seed":
        seed(args.n, args.m, args.manifest, args.extra_tokens)
    else:
        check(args.manifest, args.tokens_only)


if __name__ == "__main__":
    main()
