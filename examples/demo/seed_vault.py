#!/usr/bin/env python3
"""Seed an OpenBao (Vault API) dev server with the demo organisation of examples/demo/hr.csv.

The leaver, Alice Nguyen (E1001), holds every kind of Vault credential Closeout handles: an entity
with a userpass login, identity groups and policies, tokens (her login, a child and an orphan
token she created, a token whose metadata names her), a lease she obtained, PKI certificates in
two PKI mounts, KV v2 secrets she can read (through her entity, group and token policies) or
owns, an AppRole secret-id she owns and a non-human entity she owns. Carol Diaz (E1002) shares
her groups and token policy and logs in too; her token, her certificate and the secrets out of
Alice's reach must stay untouched.

Usage:
    eval "$(scripts/emulators.sh env)"
    .venv/bin/python examples/demo/seed_vault.py

Environment:
    VAULT_ADDR (or BAO_ADDR)    the server (required; only loopback addresses are accepted)
    VAULT_TOKEN (or BAO_TOKEN)  a root token (required)
    CLOSEOUT_CANARY_FILE        where the canary value lives (default: <repo>/.emulators/demo-canary.txt)
    CLOSEOUT_SEED_CREDENTIALS_FILE
                                for tests only: write the credentials the seed created (tokens,
                                passwords, secret-ids, certificate serials, lease) there as JSON,
                                so a test can check that every one of Alice's fails afterwards
                                and every colleague's still works

Secret values and passwords are random, except that a recognisable canary (CANARY-...) is planted
in two of Alice's secrets (platform/terraform, alice/side-project) and, when CLOSEOUT_CANARY_FILE
is set, in Alice's userpass password, so a test can check that no output ever contains it. If the
canary file already holds a canary (seed_aws.py writes it first in the demo), that value is
reused, so one canary covers both emulators; otherwise a new one is written there. No token,
password, secret-id or secret value is printed or written anywhere else. Assumes a fresh server
(the demo starts one every run).
"""

import ipaddress
import json
import os
import pathlib
import re
import secrets
import sys
import urllib.parse

import requests

REPO = pathlib.Path(__file__).resolve().parents[2]

ALICE_ID = "E1001"
ALICE_EMAIL = "alice.nguyen@example.com"
CANARY_RE = re.compile(r"^CANARY-[0-9a-f]{8,}$")


def die(message):
    print(f"seed_vault: error: {message}", file=sys.stderr)
    sys.exit(1)


def random_value():
    return secrets.token_urlsafe(24)


def hcl(*rules):
    """An ACL policy from (path, capabilities) pairs."""
    blocks = []
    for path, caps in rules:
        blocks.append(f'path "{path}" {{\n  capabilities = {json.dumps(list(caps))}\n}}\n')
    return "\n".join(blocks)


class Vault:
    """Just enough of the Vault HTTP API. Every failed call ends the script with the method,
    path, status and Vault's `errors`; request bodies (which hold secrets) are never shown."""

    def __init__(self, address, token):
        self.address = address.rstrip("/")
        self.token = token
        self.http = requests.Session()

    def call(self, method, path, body=None, token=None):
        url = f"{self.address}/v1/{path}"
        headers = {"X-Vault-Token": token or self.token}
        try:
            r = self.http.request(method, url, json=body, headers=headers, timeout=30)
        except requests.RequestException as e:
            die(f"{method} {path}: cannot reach {self.address}: {type(e).__name__}")
        if r.status_code >= 400:
            try:
                errors = r.json().get("errors") or []
            except ValueError:
                errors = [r.text.strip()[:200]]
            die(f"{method} {path}: HTTP {r.status_code}: {'; '.join(map(str, errors)) or '(no errors given)'}")
        if r.status_code == 204 or not r.content:
            return {}
        return r.json()

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body or {}, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body or {}, **kw)

    def list(self, path, **kw):
        return self.call("LIST", path, **kw)


class Seeder:
    def __init__(self, vault):
        self.v = vault
        self.summary = []
        # Written to CLOSEOUT_SEED_CREDENTIALS_FILE only (tests); never printed.
        self.credentials = {"alice": {}, "colleagues": {}}

    def note(self, line):
        self.summary.append(line)

    # --- building blocks -----------------------------------------------------------------------

    def mount_auth(self, path, kind):
        self.v.post(f"sys/auth/{path}", {"type": kind})
        return self.v.get("sys/auth")["data"][f"{path}/"]["accessor"]

    def policy(self, name, *rules):
        self.v.put(f"sys/policies/acl/{name}", {"policy": hcl(*rules)})

    def entity(self, name, metadata=None, policies=()):
        data = self.v.post(
            "identity/entity",
            {"name": name, "metadata": metadata or {}, "policies": list(policies)},
        )["data"]
        return data["id"]

    def alias(self, name, entity_id, mount_accessor):
        self.v.post(
            "identity/entity-alias",
            {"name": name, "canonical_id": entity_id, "mount_accessor": mount_accessor},
        )

    def group(self, name, policies=(), member_entity_ids=(), member_group_ids=(), metadata=None):
        return self.v.post(
            "identity/group",
            {
                "name": name,
                "type": "internal",
                "policies": list(policies),
                "member_entity_ids": list(member_entity_ids),
                "member_group_ids": list(member_group_ids),
                "metadata": metadata or {},
            },
        )["data"]["id"]

    def kv(self, key, data, owner=None):
        """A KV v2 secret under secret/ (custom_metadata owner when given)."""
        self.v.post(f"secret/data/{key}", {"data": data})
        if owner is not None:
            self.v.post(f"secret/metadata/{key}", {"custom_metadata": {"owner": owner}})

    def login(self, user, password):
        auth = self.v.post(f"auth/userpass/login/{user}", {"password": password}, token="-")["auth"]
        return auth["client_token"], auth.get("entity_id", "")

    def issue(self, mount, role, common_name, token=None, **extra):
        """Issue a certificate; returns (serial, lease_id). The private key is dropped."""
        data = dict(common_name=common_name, ttl="720h", **extra)
        answer = self.v.post(f"{mount}/issue/{role}", data, token=token)
        return answer["data"]["serial_number"], answer.get("lease_id", "")

    def pki_mount(self, path, ca_name, description):
        self.v.post(
            f"sys/mounts/{path}",
            {"type": "pki", "description": description, "config": {"max_lease_ttl": "87600h"}},
        )
        self.v.post(
            f"{path}/root/generate/internal",
            {"common_name": ca_name, "ttl": "87600h", "key_type": "ec", "key_bits": 256},
        )

    def pki_role(self, mount, name, **options):
        role = {
            "allow_any_name": True,
            "enforce_hostnames": False,
            "allow_ip_sans": False,
            "key_type": "ec",
            "key_bits": 256,
            "max_ttl": "2160h",
        }
        role.update(options)
        self.v.post(f"{mount}/roles/{name}", role)

    # --- the organisation ----------------------------------------------------------------------

    def seed(self, canary, canary_password, pg=None):
        v = self.v
        if "userpass/" in v.get("sys/auth")["data"]:
            die(
                "this server already holds the demo organisation (userpass/ is mounted); seed a "
                "fresh one (scripts/emulators.sh stop && scripts/emulators.sh start)"
            )

        # Auth methods.
        userpass = self.mount_auth("userpass", "userpass")
        approle = self.mount_auth("approle", "approle")

        # Policies: through her group, her entity and her token; and an unrelated one.
        self.policy(
            "engineering-read",
            ("secret/data/engineering/*", ["read"]),
            ("secret/metadata/engineering/*", ["read", "list"]),
            ("secret/data/engineering/break-glass", ["deny"]),
        )
        self.policy(
            "alice-platform",
            ("secret/data/platform/+", ["read"]),
            # No sudo: with sudo she could mint tokens with any policy, and so reach everything.
            ("auth/token/create", ["update"]),
            ("auth/token/create-orphan", ["update"]),
            ("pki/issue/*", ["update"]),
            # The payments database (only when scripts/emulators.sh runs PostgreSQL): its KV
            # secret, dynamic credentials, a static role's credentials and the connection.
            *(
                [
                    ("secret/data/payments/*", ["read"]),
                    ("database/creds/payments-app", ["read"]),
                    ("database/static-creds/payments-static", ["read"]),
                    ("database/config/payments", ["read"]),
                ]
                if pg
                else []
            ),
        )
        self.policy("oncall", ("secret/data/oncall/*", ["read"]))
        self.policy("deploy-bot", ("secret/data/deploy/*", ["read"]))
        self.policy("metrics-exporter", ("secret/data/metrics/*", ["read"]))
        self.policy("finance-read", ("secret/data/finance/*", ["read"]))
        self.note(
            "policies: engineering-read (group), alice-platform (Alice's entity), oncall (userpass "
            "token policy), deploy-bot, metrics-exporter, finance-read"
        )

        # People: userpass logins, entities named by the email local part, userpass aliases.
        passwords = {
            "alice.nguyen": canary_password or random_value(),
            "carol.diaz": random_value(),
            "bob.martin": random_value(),
        }
        v.post(
            "auth/userpass/users/alice.nguyen",
            {"password": passwords["alice.nguyen"], "token_policies": ["oncall", "alice-platform"]},
        )
        v.post(
            "auth/userpass/users/carol.diaz",
            {"password": passwords["carol.diaz"], "token_policies": ["oncall"]},
        )
        v.post("auth/userpass/users/bob.martin", {"password": passwords["bob.martin"]})

        alice = self.entity(
            "alice.nguyen",
            {"identity": ALICE_ID, "department": "engineering"},
            policies=["alice-platform"],
        )
        carol = self.entity("carol.diaz", {"identity": "E1002", "department": "engineering"})
        bob = self.entity("bob.martin", {"identity": "E1000", "department": "engineering"})
        grace = self.entity("grace.kim", {"identity": "E1005", "department": "finance"})
        for name, entity_id in (("alice.nguyen", alice), ("carol.diaz", carol), ("bob.martin", bob)):
            self.alias(name, entity_id, userpass)
        self.note(
            "entities with userpass logins: alice.nguyen (entity policy alice-platform, token "
            "policies oncall and alice-platform), carol.diaz (token policy oncall), bob.martin; grace.kim (no login)"
        )

        # Identity groups: platform (Alice, Carol) is a member of engineering, which has the policy.
        platform = self.group("platform", member_entity_ids=[alice, carol])
        self.group(
            "engineering",
            policies=["engineering-read"],
            member_entity_ids=[bob],
            member_group_ids=[platform],
        )
        self.group("finance", policies=["finance-read"], member_entity_ids=[grace])
        self.note(
            "groups: platform (alice.nguyen, carol.diaz) is a member of engineering (bob.martin; "
            "policy engineering-read); finance (grace.kim)"
        )

        # KV v2 secrets under secret/.
        self.kv("engineering/ci-deploy", {"token": random_value()})
        self.kv("engineering/break-glass", {"password": random_value()}, owner="E1004")
        self.kv("platform/terraform", {"api_token": f"{canary}-{random_value()}"})
        self.kv("oncall/pager", {"integration_key": random_value()})
        self.kv("alice/side-project", {"notes": f"{canary} {random_value()}"}, owner=ALICE_EMAIL)
        self.kv("finance/ledger", {"db_password": random_value()}, owner="E1005")
        self.kv("carol/notes", {"notes": random_value()}, owner="carol.diaz@example.com")
        self.kv("metrics/exporter", {"api_key": random_value()})
        self.note(
            "secrets Alice reaches: engineering/ci-deploy (group engineering-read via platform), "
            "platform/terraform (entity policy), oncall/pager (token policy), alice/side-project "
            "(owner = her email)"
        )
        self.note(
            "secrets out of her reach: engineering/break-glass (denied), finance/ledger, "
            "carol/notes, metrics/exporter"
        )

        if pg:
            self.payments_database(pg)

        # PKI: two mounts; roles without leases, one with generate_lease.
        self.pki_mount("pki", "Example Corp Demo Root CA", "people certificates")
        self.pki_role("pki", "people")
        self.pki_role("pki", "people-leased", generate_lease=True)
        self.pki_mount("pki-internal", "Example Corp Internal CA", "internal services")
        self.pki_role("pki-internal", "internal", allowed_uri_sans=["spiffe://example.com/*"])
        alice_vpn, _ = self.issue("pki", "people", ALICE_EMAIL)
        alice_internal, _ = self.issue("pki-internal", "internal", "alice.nguyen")
        alice_workload, _ = self.issue(
            "pki-internal",
            "internal",
            "workstation-17.internal.example.com",
            uri_sans="spiffe://example.com/people/E1001",
        )
        carol_cert, _ = self.issue("pki", "people", "carol.diaz@example.com")
        ci_cert, _ = self.issue("pki-internal", "internal", "ci.internal.example.com")
        self.credentials["alice"]["certificates"] = [
            ["pki", alice_vpn],
            ["pki-internal", alice_internal],
            ["pki-internal", alice_workload],
        ]
        self.credentials["colleagues"]["certificates"] = [
            ["pki", carol_cert],
            ["pki-internal", ci_cert],
        ]
        self.note(
            f"certificates of Alice: pki CN={ALICE_EMAIL} ({alice_vpn}), pki-internal "
            f"CN=alice.nguyen ({alice_internal}), pki-internal SAN URI "
            f"spiffe://example.com/people/E1001 ({alice_workload})"
        )
        self.note(f"other certificates: pki CN=carol.diaz@example.com ({carol_cert}), "
                  f"pki-internal CN=ci.internal.example.com ({ci_cert})")

        # AppRole: deploy-bot (its secret-id owned by Alice) and metrics-exporter (Carol's).
        v.post("auth/approle/role/deploy-bot", {"token_policies": ["deploy-bot"], "token_ttl": "1h"})
        deploy_role_id = v.get("auth/approle/role/deploy-bot/role-id")["data"]["role_id"]
        deploy_secret = v.post(
            "auth/approle/role/deploy-bot/secret-id",
            {"metadata": json.dumps({"owner": ALICE_EMAIL})},
        )["data"]
        # Where the bot picks its credentials up (Closeout publishes the rotated one here too).
        v.post(
            "secret/data/closeout/approle/deploy-bot",
            {"data": {"role_id": deploy_role_id, "secret_id": deploy_secret["secret_id"]}},
        )
        v.post(
            "auth/approle/role/metrics-exporter",
            {"token_policies": ["metrics-exporter"], "token_ttl": "1h"},
        )
        metrics_secret = v.post(
            "auth/approle/role/metrics-exporter/secret-id",
            {"metadata": json.dumps({"owner": "carol.diaz@example.com"})},
        )["data"]
        metrics_role_id = v.get("auth/approle/role/metrics-exporter/role-id")["data"]["role_id"]
        self.credentials["alice"]["secret_ids"] = [[deploy_role_id, deploy_secret["secret_id"]]]
        self.credentials["colleagues"]["secret_ids"] = [
            [metrics_role_id, metrics_secret["secret_id"]]
        ]
        # The non-human identity Alice owns: an entity whose AppRole alias is the role-id.
        deploy_bot = self.entity("deploy-bot", {"owner": ALICE_ID, "purpose": "deployments"})
        self.alias(deploy_role_id, deploy_bot, approle)
        self.note(
            f"AppRole deploy-bot: secret-id {deploy_secret['secret_id_accessor']} (accessor; "
            f"metadata owner = Alice's email), published to secret/closeout/approle/deploy-bot; "
            f"entity deploy-bot (owner = E1001) with the role-id as its alias"
        )
        self.note(
            f"AppRole metrics-exporter: secret-id {metrics_secret['secret_id_accessor']} "
            f"(accessor; owner = Carol)"
        )

        # Logins and tokens. Alice: her login, a child and an orphan token she creates, a lease
        # she obtains. Root: a CI token whose metadata names her. Carol: her login.
        alice_token, alice_login_entity = self.login("alice.nguyen", passwords["alice.nguyen"])
        if alice_login_entity != alice:
            die("alice.nguyen's login did not map to her entity (the userpass alias is wrong)")
        alice_cli = v.post(
            "auth/token/create",
            {"display_name": "alice-cli", "ttl": "8h", "meta": {"purpose": "cli session"}},
            token=alice_token,
        )["auth"]["client_token"]
        alice_cron = v.post(
            "auth/token/create-orphan",
            {
                "display_name": "alice-cron",
                "policies": ["default", "alice-platform"],
                "ttl": "720h",
                "meta": {"purpose": "nightly report cron job"},
            },
            token=alice_token,
        )["auth"]["client_token"]
        # The cron job's own orphan: no entity, created by an orphan; only the audit log, two
        # generations deep, ties it to Alice.
        alice_cron_worker = v.post(
            "auth/token/create-orphan",
            {"display_name": "alice-cron-worker", "ttl": "24h"},
            token=alice_cron,
        )["auth"]["client_token"]
        leased_cert, lease_id = self.issue("pki", "people-leased", ALICE_EMAIL, token=alice_token)
        self.credentials["alice"]["certificates"].append(["pki", leased_cert])
        if not lease_id:
            die("pki/issue/people-leased returned no lease (generate_lease not honoured)")
        ci_runner = v.post(
            "auth/token/create",
            {
                "display_name": "ci-runner",
                "policies": ["deploy-bot"],
                "ttl": "720h",
                "meta": {"owner": ALICE_EMAIL, "purpose": "ci runner"},
            },
        )["auth"]["client_token"]
        # Check the reach the summary claims, with Alice's own token (values are not kept).
        for key in ("engineering/ci-deploy", "platform/terraform", "oncall/pager"):
            v.get(f"secret/data/{key}", token=alice_token)
        denied = v.http.get(
            f"{v.address}/v1/secret/data/engineering/break-glass",
            headers={"X-Vault-Token": alice_token},
            timeout=30,
        ).status_code
        if denied != 403:
            die(f"engineering/break-glass answered HTTP {denied} to Alice, expected 403")
        if pg:
            # What she takes with her: dynamic credentials (a lease her token obtained) and the
            # static role's current password.
            dynamic = v.get("database/creds/payments-app", token=alice_token)
            v.get("database/static-creds/payments-static", token=alice_token)
            self.note(
                f"database: Alice obtained dynamic credentials (lease {dynamic['lease_id']}, user "
                f"{dynamic['data']['username']}) and read static-creds/payments-static"
            )
        self.credentials["alice"].update(
            tokens=[alice_token, alice_cli, alice_cron, alice_cron_worker, ci_runner],
            userpass=["alice.nguyen", passwords["alice.nguyen"]],
            lease=lease_id,
        )
        del alice_token

        carol_token, carol_login_entity = self.login("carol.diaz", passwords["carol.diaz"])
        self.credentials["colleagues"].update(
            tokens=[carol_token],
            userpass=["carol.diaz", passwords["carol.diaz"]],
        )
        if carol_login_entity != carol:
            die("carol.diaz's login did not map to her entity (the userpass alias is wrong)")
        self.note(
            "tokens: Alice's login token, a child (alice-cli) and an orphan (alice-cron) she "
            "created, the orphan's own orphan (alice-cron-worker), ci-runner (root-created, meta "
            "owner = her email); Carol's login token"
        )
        self.note(f"lease Alice obtained: {lease_id} (certificate CN={ALICE_EMAIL})")


    def payments_database(self, pg):
        """The payments database: its KV secret (rotated at the database by the
        postgresql-single-user strategy its custom metadata names), and a database engine
        connection to it with a static and a dynamic role."""
        v = self.v
        self.kv(
            "payments/db",
            {
                "engine": "postgres",
                "host": pg["host"],
                "port": str(pg["port"]),
                "dbname": pg["dbname"],
                "username": "payments_kv",
                "password": pg["passwords"]["payments_kv"],
            },
        )
        v.post(
            "secret/metadata/payments/db",
            {"custom_metadata": {"closeout:rotation": "postgresql-single-user"}},
        )
        v.post("sys/mounts/database", {"type": "database"})
        v.post(
            "database/config/payments",
            {
                "plugin_name": "postgresql-database-plugin",
                "connection_url": (
                    f"postgresql://{{{{username}}}}:{{{{password}}}}@{pg['host']}:{pg['port']}/"
                    f"{pg['dbname']}?sslmode=disable"
                ),
                "username": "vault_admin",
                "password": pg["passwords"]["vault_admin"],
                "allowed_roles": ["payments-app", "payments-static"],
            },
        )
        v.post(
            "database/static-roles/payments-static",
            {"db_name": "payments", "username": "payments_static", "rotation_period": "720h"},
        )
        v.post(
            "database/roles/payments-app",
            {
                "db_name": "payments",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
                ],
                # Dropping the user is all a revocation needs: it was granted nothing (the
                # plugin's default revocation revokes every table and sequence privilege in the
                # schema first, which vault_admin may not do on the other roles' tables).
                "revocation_statements": ["DROP ROLE IF EXISTS \"{{name}}\";"],
                "default_ttl": "8h",
                "max_ttl": "24h",
            },
        )
        self.note(
            f"payments database (PostgreSQL 127.0.0.1:{pg['port']}): KV secret payments/db "
            "(custom metadata closeout:rotation = postgresql-single-user, user payments_kv); "
            "database engine connection payments (user vault_admin), static role "
            "payments-static (user payments_static), dynamic role payments-app"
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


def vault_address():
    address = os.environ.get("VAULT_ADDR") or os.environ.get("BAO_ADDR")
    if not address:
        die("VAULT_ADDR is not set: eval \"$(scripts/emulators.sh env)\" first")
    host = urllib.parse.urlsplit(address).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        die(f"refusing to seed {address}: this script is for a local dev server only")
    return address


def load_canary(canary_file):
    """The canary already in the file (written by seed_aws.py), else a new one written there."""
    try:
        existing = canary_file.read_text().strip()
    except OSError:
        existing = ""
    if CANARY_RE.match(existing):
        return existing
    canary = f"CANARY-{secrets.token_hex(12)}"
    canary_file.parent.mkdir(parents=True, exist_ok=True)
    canary_file.write_text(canary + "\n")
    return canary


def main():
    address = vault_address()
    token = os.environ.get("VAULT_TOKEN") or os.environ.get("BAO_TOKEN")
    if not token:
        die("VAULT_TOKEN is not set: eval \"$(scripts/emulators.sh env)\" first")

    canary_env = os.environ.get("CLOSEOUT_CANARY_FILE")
    canary_file = pathlib.Path(canary_env or REPO / ".emulators" / "demo-canary.txt")
    canary = load_canary(canary_file)
    canary_password = f"{canary}-{random_value()}" if canary_env else None

    seeder = Seeder(Vault(address, token))
    seeder.seed(canary, canary_password, load_pg_seed())
    credentials_file = os.environ.get("CLOSEOUT_SEED_CREDENTIALS_FILE")
    if credentials_file:
        path = pathlib.Path(credentials_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(seeder.credentials, f)

    print(f"seeded the demo organisation into {address}:")
    for line in seeder.summary:
        print(f"  - {line}")
    where = "platform/terraform and alice/side-project"
    if canary_password:
        where += " and Alice's userpass password"
    print(f"  canary planted in {where}; value in {canary_file}")


if __name__ == "__main__":
    main()
