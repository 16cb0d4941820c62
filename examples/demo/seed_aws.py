#!/usr/bin/env python3
"""Seed an AWS emulator (moto) with the demo organisation of examples/demo/hr.csv.

The leaver, Alice Nguyen (E1001), holds every credential kind Closeout handles on AWS, can assume
roles in each of the ways it resolves, can read secrets in each of the ways it resolves, and owns
two non-human identities. Her colleagues share her groups; some roles and secrets are deliberately
out of her reach and must stay untouched.

The second leaver, Dana Kim (E1007), never had an IAM user: she signs in through IAM Identity
Center, as a member of the group data-engineers (permission set DataAccess, which reads
data/dana-pipeline-token) and with the permission set DataAdmin assigned to her alone. Her
colleague Hassan Ali (E1006) is in the same group and signs in to the same role. moto's sso-admin
does not provision roles into IAM, so this script creates the AWSReservedSSO_ roles as Identity
Center would.

Usage:
    AWS_ENDPOINT_URL=http://127.0.0.1:4566 .venv/bin/python examples/demo/seed_aws.py

Environment:
    AWS_ENDPOINT_URL       the emulator (required; this script refuses to talk to real AWS)
    CLOSEOUT_CANARY_FILE   where to write the canary value (default: <repo>/.emulators/demo-canary.txt)

Credentials are always testing/testing and the region us-east-1. Secret values are random, except
that a recognisable canary (CANARY-...) is planted in two of Alice's secrets and written to the
canary file, so a test can check that no output ever contains it. Assumes a fresh server.
"""

import datetime
import json
import os
import pathlib
import secrets
import sys

import boto3
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REGION = "us-east-1"
REPO = pathlib.Path(__file__).resolve().parents[2]

ALICE_EMAIL = "alice.nguyen@example.com"


def die(message):
    print(f"seed: error: {message}", file=sys.stderr)
    sys.exit(1)


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions, resources, **extra):
    statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    statement.update(extra)
    return statement


def trust(principal):
    return policy({"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"})


def tags(**pairs):
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def random_value():
    return secrets.token_urlsafe(24)


def ssh_public_key(comment):
    """A real RSA public key in OpenSSH format (the private half is thrown away)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{body.decode()} {comment}"


def self_signed_certificate(common_name):
    """A self-signed X.509 certificate, PEM encoded (the private key is thrown away)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp (Closeout demo)"),
        ]
    )
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


class Seeder:
    def __init__(self, endpoint):
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=REGION,
        )
        self.iam = session.client("iam", endpoint_url=endpoint)
        self.sm = session.client("secretsmanager", endpoint_url=endpoint)
        self.sts = session.client("sts", endpoint_url=endpoint)
        self.sso = session.client("sso-admin", endpoint_url=endpoint)
        self.ids = session.client("identitystore", endpoint_url=endpoint)
        self.account = self.sts.get_caller_identity()["Account"]
        self.summary = []

    def note(self, line):
        self.summary.append(line)

    def arn(self, kind, name):
        return f"arn:aws:iam::{self.account}:{kind}/{name}"

    # --- IAM -----------------------------------------------------------------------------------

    def user(self, name, **tag_pairs):
        self.iam.create_user(UserName=name, Tags=tags(**tag_pairs))
        return self.arn("user", name)

    def login_profile(self, user):
        self.iam.create_login_profile(
            UserName=user, Password=random_value() + "!Aa1", PasswordResetRequired=False
        )

    def access_key(self, user, active=True):
        key_id = self.iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
        if not active:
            self.iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
        return key_id

    def mfa(self, user, device_name):
        serial = self.iam.create_virtual_mfa_device(VirtualMFADeviceName=device_name)[
            "VirtualMFADevice"
        ]["SerialNumber"]
        # Two consecutive TOTP codes; moto accepts any six digits.
        self.iam.enable_mfa_device(
            UserName=user,
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        return serial

    def managed_policy(self, name, document, description):
        return self.iam.create_policy(
            PolicyName=name, PolicyDocument=document, Description=description
        )["Policy"]["Arn"]

    def group(self, name, members):
        self.iam.create_group(GroupName=name)
        for member in members:
            self.iam.add_user_to_group(GroupName=name, UserName=member)

    def role(self, name, trust_document, description, **tag_pairs):
        self.iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=trust_document,
            Description=description,
            Tags=tags(**tag_pairs),
        )
        return self.arn("role", name)

    # --- IAM Identity Center -------------------------------------------------------------------

    def sso_user(self, store, user_name, email, given, family):
        return self.ids.create_user(
            IdentityStoreId=store,
            UserName=user_name,
            DisplayName=f"{given} {family}",
            Name={"GivenName": given, "FamilyName": family},
            Emails=[{"Value": email, "Primary": True}],
        )["UserId"]

    def identity_center(self):
        """Dana Kim (E1007): Identity Center only, no IAM user."""
        instance = self.sso.list_instances()["Instances"][0]
        arn, store = instance["InstanceArn"], instance["IdentityStoreId"]
        # Matched by email (her user name is not a form of her id or email); it is also her role
        # session name, which is what the session deny names.
        dana = self.sso_user(store, "dkim", "dana.kim@example.com", "Dana", "Kim")
        hassan = self.sso_user(store, "hassan.ali@example.com", "hassan.ali@example.com", "Hassan", "Ali")
        group = self.ids.create_group(IdentityStoreId=store, DisplayName="data-engineers")["GroupId"]
        for member in (dana, hassan):
            self.ids.create_group_membership(
                IdentityStoreId=store, GroupId=group, MemberId={"UserId": member}
            )
        token = self.secret("data/dana-pipeline-token", description="Read through the DataAccess permission set")
        sso_trust = policy(
            {
                "Effect": "Allow",
                "Principal": {"Federated": self.arn("saml-provider", "AWSSSO_5e1f0c0ffee0d00d_DO_NOT_DELETE")},
                "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
                "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}},
            }
        )
        for name, principal_type, principal, suffix, role_policy in (
            ("DataAccess", "GROUP", group, "5e1f0c0ffee0d00d", allow("secretsmanager:GetSecretValue", token)),
            ("DataAdmin", "USER", dana, "a11ce0b0b0c0ffee", allow("secretsmanager:ListSecrets", "*")),
        ):
            ps = self.sso.create_permission_set(InstanceArn=arn, Name=name, SessionDuration="PT8H")[
                "PermissionSet"
            ]["PermissionSetArn"]
            self.sso.create_account_assignment(
                InstanceArn=arn,
                TargetId=self.account,
                TargetType="AWS_ACCOUNT",
                PermissionSetArn=ps,
                PrincipalType=principal_type,
                PrincipalId=principal,
            )
            role = f"AWSReservedSSO_{name}_{suffix}"
            self.iam.create_role(
                RoleName=role,
                Path="/aws-reserved/sso.amazonaws.com/",
                AssumeRolePolicyDocument=sso_trust,
                MaxSessionDuration=8 * 3600,
            )
            self.iam.put_role_policy(RoleName=role, PolicyName="AwsSSOInlinePolicy", PolicyDocument=policy(role_policy))
        self.note(
            "Dana Kim (E1007): identity center user dkim only (no IAM user), in group data-engineers "
            "(permission set DataAccess, reads data/dana-pipeline-token) and assigned DataAdmin; "
            "Hassan Ali shares the group and the role"
        )

    # --- Secrets Manager -----------------------------------------------------------------------

    def secret(self, name, value=None, description="", resource_policy=None, **tag_pairs):
        arn = self.sm.create_secret(
            Name=name,
            SecretString=value if value is not None else random_value(),
            Description=description,
            Tags=tags(**tag_pairs),
        )["ARN"]
        if resource_policy is not None:
            self.sm.put_resource_policy(SecretId=name, ResourcePolicy=resource_policy)
        return arn

    # --- the organisation ----------------------------------------------------------------------

    def seed(self, canary):
        iam = self.iam
        try:
            iam.get_user(UserName="alice")
            die(
                "this server already holds the demo organisation; seed a fresh one "
                "(scripts/emulators.sh stop && scripts/emulators.sh start)"
            )
        except ClientError as e:
            if e.response["Error"]["Code"] != "NoSuchEntity":
                raise

        # People other than Alice.
        self.user("bob.martin", department="engineering")
        self.access_key("bob.martin")
        self.note("bob.martin (E1000, Alice's manager): user, 1 access key")

        self.user("carol.diaz", department="engineering")
        self.login_profile("carol.diaz")
        self.access_key("carol.diaz")
        self.note("carol.diaz (E1002): user, login profile, 1 access key")

        dan = self.user("dan.okafor", identity="E1003", department="data")
        self.access_key("dan.okafor")
        self.note("dan.okafor (E1003, identity tag by id): user, 1 access key")

        self.user("erin.walsh", department="security")
        self.login_profile("erin.walsh")
        self.access_key("erin.walsh")
        self.mfa("erin.walsh", "erin-break-glass-token")
        admin = self.managed_policy(
            "break-glass-admin", policy(allow("*", "*")), "Break-glass administrator"
        )
        iam.attach_user_policy(UserName="erin.walsh", PolicyArn=admin)
        self.note("erin.walsh (E1004, protected): user, login, key, MFA, break-glass-admin")

        self.user("grace.kim", department="finance")
        self.access_key("grace.kim")
        self.note("grace.kim (E1005): user, 1 access key")

        # Alice, the leaver: every credential kind.
        alice = self.user("alice", identity=ALICE_EMAIL, department="engineering")
        self.login_profile("alice")
        active_key = self.access_key("alice")
        inactive_key = self.access_key("alice", active=False)
        ssh = iam.upload_ssh_public_key(
            UserName="alice", SSHPublicKeyBody=ssh_public_key(ALICE_EMAIL)
        )["SSHPublicKey"]["SSHPublicKeyId"]
        cert = iam.upload_signing_certificate(
            UserName="alice", CertificateBody=self_signed_certificate(ALICE_EMAIL)
        )["Certificate"]["CertificateId"]
        mfa = self.mfa("alice", "alice-phone")
        self.note(
            f"alice (E1001, identity tag by email): login profile, access keys {active_key} "
            f"(active) and {inactive_key} (inactive), SSH key {ssh}, signing certificate "
            f"{cert}, MFA {mfa}"
        )

        # Groups Alice shares with Carol; Dan's own group.
        eng_secrets = self.managed_policy(
            "engineering-secrets-read",
            policy(
                allow(
                    ["secretsmanager:GetSecret*", "secretsmanager:DescribeSecret"],
                    "arn:aws:secretsmanager:*:*:secret:eng/*",
                )
            ),
            "Engineering reads the eng/ secrets",
        )
        self.group("engineering", ["alice", "carol.diaz"])
        iam.attach_group_policy(GroupName="engineering", PolicyArn=eng_secrets)
        self.group("oncall", ["alice", "carol.diaz"])
        iam.put_group_policy(
            GroupName="oncall",
            PolicyName="assume-oncall-roles",
            PolicyDocument=policy(allow("sts:AssumeRole", "arn:aws:iam::*:role/oncall-*")),
        )
        self.group("data", ["dan.okafor"])
        iam.put_group_policy(
            GroupName="data",
            PolicyName="data-secrets-read",
            PolicyDocument=policy(
                allow("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:*:*:secret:data/*")
            ),
        )
        self.note("groups: engineering (alice, carol.diaz), oncall (alice, carol.diaz), data (dan.okafor)")

        # Alice's own policies: neither lets her read a secret value.
        tools = self.managed_policy(
            "engineering-readonly-tools",
            policy(
                allow(
                    ["secretsmanager:ListSecrets", "secretsmanager:DescribeSecret", "logs:Get*"],
                    "*",
                )
            ),
            "Read-only tooling: lists and describes secrets, reads logs",
        )
        iam.attach_user_policy(UserName="alice", PolicyArn=tools)
        iam.put_user_policy(
            UserName="alice",
            PolicyName="alice-sandbox",
            PolicyDocument=policy(
                allow("s3:*", ["arn:aws:s3:::alice-sandbox", "arn:aws:s3:::alice-sandbox/*"])
            ),
        )
        self.note("alice policies: engineering-readonly-tools (attached), alice-sandbox (inline)")

        # Roles.
        root = f"arn:aws:iam::{self.account}:root"
        self.role("oncall-responder", trust({"AWS": root}), "On-call responders (via the oncall group)")
        iam.put_role_policy(
            RoleName="oncall-responder",
            PolicyName="payments-secrets-read",
            PolicyDocument=policy(
                allow(
                    "secretsmanager:GetSecretValue",
                    "arn:aws:secretsmanager:*:*:secret:prod/payments/*",
                )
            ),
        )
        self.role("alice-debug", trust({"AWS": alice}), "Alice's debugging role (trust names her)")
        iam.put_role_policy(
            RoleName="alice-debug",
            PolicyName="read-logs",
            PolicyDocument=policy(allow(["logs:Get*", "logs:Describe*"], "*")),
        )
        # Out of Alice's reach: trusts another user; trusts the account but no policy of Alice's
        # allows assuming it.
        self.role("unrelated-role", trust({"AWS": dan}), "Dan's role (trust names dan.okafor)")
        self.role("finance-auditor", trust({"AWS": root}), "Finance audit (not reachable by Alice)")
        iam.put_role_policy(
            RoleName="finance-auditor",
            PolicyName="finance-secrets-read",
            PolicyDocument=policy(
                allow("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:*:*:secret:finance/*")
            ),
        )
        self.note("roles: oncall-responder, alice-debug (reachable); unrelated-role, finance-auditor (not)")

        # Non-human identities Alice owns.
        self.user("svc-build", owner=ALICE_EMAIL, purpose="ci-build")
        nhi_key = self.access_key("svc-build")
        self.role(
            "svc-deployer",
            trust({"Service": "ecs-tasks.amazonaws.com"}),
            "Deployment automation (owned by Alice)",
            owner="E1001",
        )
        iam.put_role_policy(
            RoleName="svc-deployer",
            PolicyName="deploy",
            PolicyDocument=policy(allow(["ecs:UpdateService", "ecs:DescribeServices"], "*")),
        )
        self.note(f"NHIs owned by Alice: user svc-build (owner tag = email, key {nhi_key}), role svc-deployer (owner tag = id)")

        # Secrets.
        self.secret("eng/ci-token", description="CI token (engineering group)", team="engineering")
        self.secret(
            "prod/payments/db",
            value=json.dumps({"username": "payments", "password": f"{canary}-{random_value()}"}),
            description="Payments database (via oncall-responder)",
            # A JSON secret is rotated only by a named strategy (docs/rotation.md): here only
            # the password changes; the username is kept.
            **{"closeout:rotation": "template:password"},
        )
        self.secret(
            "team/analytics-key",
            description="Analytics API key (resource policy names Alice)",
            resource_policy=policy(
                allow("secretsmanager:GetSecretValue", "*", Principal={"AWS": alice})
            ),
        )
        self.secret(
            "alice/personal-notes",
            value=f"{canary} {random_value()}",
            description="Owned by Alice",
            owner=ALICE_EMAIL,
        )
        pg = load_pg_seed()
        if pg:
            # The payments database's own credentials (scripts/emulators.sh runs PostgreSQL):
            # rotated at the database, every field but the password kept.
            self.secret(
                "prod/payments/postgres",
                value=json.dumps(
                    {
                        "engine": "postgres",
                        "host": pg["host"],
                        "port": pg["port"],
                        "dbname": pg["dbname"],
                        "username": "payments_app",
                        "password": pg["passwords"]["payments_app"],
                    }
                ),
                description="Payments PostgreSQL login (via oncall-responder)",
                **{"closeout:rotation": "postgresql-single-user"},
            )
            self.note(
                f"prod/payments/postgres: the payments database's login payments_app "
                f"(PostgreSQL 127.0.0.1:{pg['port']}; tag closeout:rotation = postgresql-single-user)"
            )
        self.identity_center()
        self.secret("finance/ledger-key", description="Nothing of Alice reaches this", owner="E1005")
        self.secret("carol/deploy-token", owner="carol.diaz@example.com")
        self.secret("data/warehouse-password", owner="E1003")
        self.secret("security/break-glass-codes", owner="E1004")
        self.note(
            "secrets Alice reaches: eng/ci-token (group), prod/payments/db (role), "
            "team/analytics-key (resource policy), alice/personal-notes (owner tag)"
        )
        self.note(
            "secrets out of her reach: finance/ledger-key, carol/deploy-token, "
            "data/warehouse-password, security/break-glass-codes"
        )


def load_pg_seed():
    """The payments database seed_postgres.py wrote, when the demo runs PostgreSQL."""
    if not os.environ.get("DEMO_PG_PORT"):
        return None
    path = os.environ.get("DEMO_PG_SEED", ".emulators/postgres-seed.json")
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        die(f"DEMO_PG_PORT is set but {path} cannot be read ({e}): run seed_postgres.py first")


def main():
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        die("AWS_ENDPOINT_URL is not set: point it at the emulator, e.g. http://127.0.0.1:4566")
    if "amazonaws.com" in endpoint:
        die(f"refusing to seed {endpoint}: this script is for local emulators only")

    canary_file = pathlib.Path(
        os.environ.get("CLOSEOUT_CANARY_FILE") or REPO / ".emulators" / "demo-canary.txt"
    )
    canary = f"CANARY-{secrets.token_hex(12)}"

    seeder = Seeder(endpoint)
    seeder.seed(canary)

    canary_file.parent.mkdir(parents=True, exist_ok=True)
    canary_file.write_text(canary + "\n")

    print(f"seeded the demo organisation into {endpoint} (account {seeder.account}):")
    for line in seeder.summary:
        print(f"  - {line}")
    print(f"  canary planted in alice/personal-notes and prod/payments/db; value in {canary_file}")


if __name__ == "__main__":
    main()
