#!/usr/bin/env python3
"""Seed the Azure test double (tests/azure-double) with the demo organisation of examples/demo/hr.csv.

Everything is created through the real write APIs the double accepts (Microsoft Graph v1.0, Azure
Resource Manager, the Key Vault data plane api-version 7.6), with a client-credentials token of
the double's test client, exactly as it would be against a real tenant.

The leaver, Alice Nguyen (E1001), reaches Key Vault secrets in each way Closeout resolves:

  kv-platform  access-policy vault; her group chain platform-oncall < platform < engineering holds
               Key Vault Contributor on its resource group: she can add herself an access policy
  kv-payments  RBAC vault; she holds Role Based Access Control Administrator on its resource
               group, with a condition that only lets her assign Key Vault Secrets User: she can
               give herself read access
  kv-data      RBAC vault; Key Vault Secrets User assigned to her directly, Key Vault Certificate
               User through her group platform (Carol's own direct Secrets User stays)
  kv-oncall    access-policy vault; a policy naming her, one naming her group platform-oncall
               (and Carol's own policy, which stays)
  kv-finance   in another subscription, out of her reach, but holding a secret tagged
               owner=alice.nguyen@example.com

She owns three applications (deploy-pipeline with a client secret and a certificate,
cost-report, and oncall-bot, co-owned with Carol); Carol owns metrics-exporter. deploy-pipeline's
current client secret is published to kv-closeout-ops, where Closeout publishes rotated ones.

In Entra she holds the directory role Helpdesk Administrator, Groups Administrator as an active
PIM assignment, and is eligible (PIM) for User Administrator; she co-owns the group
platform-oncall with Carol, holds oncall-bot's default app role, consented oncall-bot delegated
User.Read Calendars.Read, and registered a phone, a FIDO2 key, Microsoft Authenticator and a
temporary access pass. Carol has the same eligibility, ownership, app role, grant, phone and key:
they stay. (None of these roles reaches the whole tenant, so the vault scope above is unchanged.)

Closeout's own client (closeout-test-client) is granted what `closeout doctor` checks, as a
tenant administrator would: the Graph application permissions of GRAPH_PERMISSIONS, and Owner
plus Key Vault Administrator on both subscriptions.

Usage:
    eval "$(scripts/emulators.sh env)"
    .venv/bin/python examples/demo/seed_azure.py

Environment:
    AZURE_DOUBLE_URL        the double, e.g. https://127.0.0.1:8444 (required; only loopback
                            addresses are accepted)
    AZURE_DOUBLE_CA_FILE    the double's CA, trusted explicitly for every call (default:
                            <repo>/.emulators/azure-double/ca.pem)
    AZURE_CLIENT_SECRET     the test client's secret (required; the double's default is
                            closeout-test-secret)
    CLOSEOUT_CANARY_FILE    where the canary value lives (default: <repo>/.emulators/demo-canary.txt)
    CLOSEOUT_SEED_CREDENTIALS_FILE
                            for tests only: write what the seed created (object ids, role
                            assignment ids, vaults, secret/key/certificate versions before any
                            rotation, application ids, credential keyIds and client secrets)
                            there as JSON, so a test can check that every one of Alice's paths
                            is closed afterwards and every colleague's is untouched. Under
                            "alice" and "colleagues": role_assignments and access_policies
                            (principal, via_group), group_memberships, secrets / keys /
                            certificates ({vault, name, version, reach}: reach is "direct" (a
                            data role or access policy of hers or her groups), "indirect" (she
                            can grant herself access) or "owner" (only the owner tag names her)),
                            applications (ids, owners, password keyIds and secretTexts,
                            certificate keyIds)

Key Vault hosts ({vault}.lowkey-vault.local) are resolved to 127.0.0.1 inside this process only.
Secret values and client secrets are random, except that a recognisable canary (CANARY-...) is
planted in kv-data/etl-api-token, a secret Alice reads directly, and, when CLOSEOUT_CANARY_FILE is
set, in Alice's Entra password, so a test can check that no output ever contains it. If the
canary file already holds a canary (the other seeds write it first in the demo), that value is
reused; otherwise a new one is written there. No token, client secret or secret value is printed or written anywhere else.
Assumes a fresh double (the demo starts one every run).
"""

import base64
import csv
import datetime
import ipaddress
import json
import os
import pathlib
import re
import secrets
import sys
import time
import urllib.parse
import uuid

import requests
import urllib3.util.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REPO = pathlib.Path(__file__).resolve().parents[2]
HR_CSV = REPO / "examples" / "demo" / "hr.csv"

# The double's defaults; examples/demo/closeout.toml names the same tenant and client.
TENANT_ID = "72f988bf-0000-4000-8000-00000000c105"
CLIENT_ID = "closeout-test-client"
# Microsoft Graph's application id (the same in every tenant) and the application permissions
# Closeout's client is granted on it.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_PERMISSIONS = (
    "User.ReadWrite.All", "GroupMember.ReadWrite.All", "Application.ReadWrite.All",
    # Entra directory roles and PIM, owned groups, app roles, delegated grants, authentication
    # methods (issue 17).
    "Group.ReadWrite.All", "RoleManagement.ReadWrite.Directory", "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All",
)
VAULT_DNS_SUFFIX = "lowkey-vault.local"
LOCATION = "westeurope"

ARM_SCOPE = "https://management.azure.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_REF = "https://graph.microsoft.com/v1.0/directoryObjects/"
# Built-in Entra directory roles (template ids) the demo assigns; none of them reaches the whole
# tenant, so the demo's vault scope stays what the paths give.
DIRECTORY_ROLES = {
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Groups Administrator": "fdd7a751-b60b-444a-984c-02652fe8fa1c",
}
# The default access app role of an application that defines none.
DEFAULT_ACCESS = "00000000-0000-0000-0000-000000000000"

API_MG = "2021-04-01"
API_ALIAS = "2021-10-01"
API_RG = "2021-04-01"
API_KV_MGMT = "2023-07-01"
API_AUTHZ = "2022-04-01"
API_KV_DATA = "7.6"

# Fixed ids, so the demo and tests can name them.
PROD_SUBSCRIPTION = "5d2c6f0e-1a7b-4c3d-9e8f-00000000c001"
FINANCE_SUBSCRIPTION = "5d2c6f0e-1a7b-4c3d-9e8f-00000000c002"

ALICE_ID = "E1001"
ALICE_EMAIL = "alice.nguyen@example.com"
CAROL_EMAIL = "carol.diaz@example.com"
PEOPLE = (
    "alice.nguyen@example.com",
    "bob.martin@example.com",
    "carol.diaz@example.com",
    "erin.walsh@example.com",
    "grace.kim@example.com",
)
CANARY_RE = re.compile(r"^CANARY-[0-9a-f]{8,}$")

# Role Based Access Control Administrator, limited by the portal's condition form to assigning
# (and removing) Key Vault Secrets User only: still a path, since that role reads secrets.
SECRETS_USER_ROLE_ID = "4633458b-17de-408a-b874-0445c86b69e6"
ONLY_SECRETS_USER = (
    "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
    "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
    "{" + SECRETS_USER_ROLE_ID + "})) AND "
    "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
    "(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
    "{" + SECRETS_USER_ROLE_ID + "}))"
)

SECRET_PERMISSIONS_READ = ["get", "list"]


def die(message):
    print(f"seed_azure: error: {message}", file=sys.stderr)
    sys.exit(1)


def random_value():
    return secrets.token_urlsafe(24)


def is_loopback(host):
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def vault_host(host):
    return (host or "").lower().endswith("." + VAULT_DNS_SUFFIX)


# Key Vault hosts of the double resolve to loopback, in this process only (SNI, the Host header
# and certificate checks still use the vault's name, as against real Key Vault).
_create_connection = urllib3.util.connection.create_connection


def _loopback_vault_hosts(address, *args, **kwargs):
    host, port = address
    if vault_host(host):
        host = "127.0.0.1"
    return _create_connection((host, port), *args, **kwargs)


urllib3.util.connection.create_connection = _loopback_vault_hosts


class Azure:
    """Just enough of the identity platform, Graph, ARM and the Key Vault data plane. Every failed
    call ends the script with the method, path, status and the service's error code and message;
    request bodies (which hold secrets) and tokens are never shown."""

    def __init__(self, base, ca_file, client_secret):
        self.base = base.rstrip("/")
        self.client_secret = client_secret
        self.http = requests.Session()
        # No proxies, netrc or REQUESTS_CA_BUNDLE from the environment: only the double's CA.
        self.http.trust_env = False
        self.http.verify = str(ca_file)
        self.tokens = {}

    def _request(self, method, url, **kw):
        try:
            return self.http.request(method, url, timeout=30, **kw)
        except requests.RequestException as e:
            where = urllib.parse.urlsplit(url)
            die(f"{method} {where.path}: cannot reach {where.scheme}://{where.netloc}: {type(e).__name__}: {e}")

    @staticmethod
    def _fail(method, url, r):
        path = urllib.parse.urlsplit(url).path
        detail = ""
        try:
            body = r.json()
            if isinstance(body.get("error"), dict):
                detail = f"{body['error'].get('code', '')}: {body['error'].get('message', '')}"
            elif "error" in body:
                detail = f"{body.get('error')}: {str(body.get('error_description', ''))[:200]}"
        except ValueError:
            detail = r.text.strip()[:200]
        die(f"{method} {path}: HTTP {r.status_code}: {detail or '(no error given)'}")

    def token(self, scope, client_id=CLIENT_ID, client_secret=None):
        key = (scope, client_id)
        if client_secret is None and key in self.tokens:
            return self.tokens[key]
        url = f"{self.base}/{TENANT_ID}/oauth2/v2.0/token"
        r = self._request(
            "POST",
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret or self.client_secret,
                "scope": scope,
            },
        )
        if r.status_code != 200:
            self._fail("POST", url, r)
        token = r.json()["access_token"]
        if client_secret is None:
            self.tokens[key] = token
        return token

    def call(self, scope, method, url, body=None, params=None, expect=None):
        headers = {"Authorization": f"Bearer {self.token(scope)}"}
        r = self._request(method, url, json=body, params=params, headers=headers)
        if r.status_code >= 400 or (expect and r.status_code not in expect):
            self._fail(method, url, r)
        if r.status_code == 204 or not r.content:
            return {}
        return r.json()

    # --- Graph ---------------------------------------------------------------------------------

    def graph(self, method, path, body=None, params=None):
        return self.call(GRAPH_SCOPE, method, f"{self.base}/v1.0/{path}", body, params)

    # --- ARM -----------------------------------------------------------------------------------

    def arm(self, method, path, api_version, body=None, params=None, expect=None):
        query = {"api-version": api_version}
        query.update(params or {})
        return self.call(ARM_SCOPE, method, f"{self.base}{path}", body, query, expect)

    # --- Key Vault data plane ------------------------------------------------------------------

    def vault_scope(self, vault_uri):
        """The token scope a vault asks for in its 401 challenge, as the Azure SDKs find it: an
        unauthenticated request without a body first, so no secret goes out before the token."""
        url = f"{vault_uri}secrets"
        r = self._request("GET", url, params={"api-version": API_KV_DATA})
        if r.status_code != 401:
            die(f"GET {urllib.parse.urlsplit(url).path} on {vault_uri}: expected a 401 challenge, got HTTP {r.status_code}")
        challenge = dict(re.findall(r'(\w+)="([^"]*)"', r.headers.get("WWW-Authenticate", "")))
        if challenge.get("scope"):
            return challenge["scope"]
        if challenge.get("resource"):
            return challenge["resource"].rstrip("/") + "/.default"
        die(f"{vault_uri} answered 401 without a Bearer scope or resource in WWW-Authenticate")

    def kv(self, method, vault_uri, path, body=None, expect=None):
        scope = self.tokens.get(("challenge", vault_uri)) or self.vault_scope(vault_uri)
        self.tokens[("challenge", vault_uri)] = scope
        return self.call(scope, method, f"{vault_uri}{path}", body, {"api-version": API_KV_DATA}, expect)


def self_signed_certificate(common_name, days=365):
    """A self-signed certificate (base64 DER) and its SHA-1 thumbprint (base64); the private key is
    dropped at once."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return (
        base64.b64encode(der).decode(),
        base64.b64encode(cert.fingerprint(hashes.SHA1())).decode(),  # noqa: S303 (Graph's thumbprint)
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
    )


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Seeder:
    def __init__(self, azure):
        self.az = azure
        self.summary = []
        self.role_ids = {}
        # Object ids of users, groups and service principals by name (principals of assignments
        # and access policies).
        self.ids = {}
        # Written to CLOSEOUT_SEED_CREDENTIALS_FILE only (tests); never printed.
        self.created = {
            "tenant_id": TENANT_ID,
            "subscriptions": {"prod": PROD_SUBSCRIPTION, "finance": FINANCE_SUBSCRIPTION},
            "users": {},
            "groups": {},
            "vaults": {},
            "alice": {
                "role_assignments": [],
                "access_policies": [],
                "group_memberships": [],
                "secrets": [],
                "keys": [],
                "certificates": [],
                "applications": [],
            },
            # Closeout's own client's grants (not a person's; never touched by a run).
            "closeout": {"role_assignments": []},
            "colleagues": {
                "role_assignments": [],
                "access_policies": [],
                "secrets": [],
                "keys": [],
                "certificates": [],
                "applications": [],
            },
        }

    def note(self, line):
        self.summary.append(line)

    # --- Graph building blocks -----------------------------------------------------------------

    def user(self, row, password=None):
        given, _, surname = row["name"].partition(" ")
        body = {
            "accountEnabled": True,
            "displayName": row["name"],
            "givenName": given,
            "surname": surname,
            "mailNickname": row["email"].split("@")[0].replace(".", ""),
            "userPrincipalName": row["email"],
            "mail": row["email"],
            "employeeId": row["id"],
            "jobTitle": row["role"],
            "department": row["department"],
            "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": password or random_value()},
        }
        return self.az.graph("POST", "users", body)["id"]

    def group(self, name, description):
        return self.az.graph(
            "POST",
            "groups",
            {
                "displayName": name,
                "description": description,
                "mailEnabled": False,
                "mailNickname": name,
                "securityEnabled": True,
            },
        )["id"]

    def add_member(self, group_id, member_id):
        self.az.graph("POST", f"groups/{group_id}/members/$ref", {"@odata.id": GRAPH_REF + member_id})

    def application(self, name, description, owners):
        app = self.az.graph(
            "POST",
            "applications",
            {"displayName": name, "description": description, "signInAudience": "AzureADMyOrg"},
        )
        for owner in owners:
            self.az.graph("POST", f"applications/{app['id']}/owners/$ref", {"@odata.id": GRAPH_REF + owner})
        sp = self.az.graph("POST", "servicePrincipals", {"appId": app["appId"]})
        return app, sp

    def add_password(self, app, label):
        return self.az.graph(
            "POST",
            f"applications/{app['id']}/addPassword",
            {"passwordCredential": {"displayName": label}},
        )

    def add_certificate(self, app, common_name):
        der, thumbprint, start, end = self_signed_certificate(common_name)
        key_id = str(uuid.uuid4())
        self.az.graph(
            "PATCH",
            f"applications/{app['id']}",
            {
                "keyCredentials": [
                    {
                        "keyId": key_id,
                        "displayName": f"CN={common_name}",
                        "customKeyIdentifier": thumbprint,
                        "type": "AsymmetricX509Cert",
                        "usage": "Verify",
                        "key": der,
                        "startDateTime": iso(start),
                        "endDateTime": iso(end),
                    }
                ]
            },
        )
        return key_id, thumbprint

    # --- Closeout's own client -------------------------------------------------------------------

    def grant_closeout_client(self):
        """Give the configured client what `closeout doctor` asks for, as a tenant administrator would.

        Microsoft Graph application permissions (admin-consented app role assignments on the
        client's service principal): User.ReadWrite.All (read users, disable them, revoke their
        sign-in sessions), GroupMember.ReadWrite.All (read and change memberships),
        Application.ReadWrite.All (read applications, add and remove their credentials, change
        owners), Group.ReadWrite.All (hand owned groups over), RoleManagement.ReadWrite.Directory
        (directory roles and PIM), AppRoleAssignment.ReadWrite.All, DelegatedPermissionGrant.ReadWrite.All
        and UserAuthenticationMethod.ReadWrite.All; each ReadWrite permission covers its Read. On both subscriptions: Owner (read
        and change role assignments and access policies, read vaults and management groups) and
        Key Vault Administrator (the data actions on secrets, keys and certificates).
        """
        sp = self.az.graph("GET", f"servicePrincipals(appId='{CLIENT_ID}')", params={"$select": "id"})["id"]
        self.ids["closeout-client"] = sp
        graph = self.az.graph("GET", f"servicePrincipals(appId='{GRAPH_APP_ID}')",
                              params={"$select": "id,appRoles"})
        offered = {r["value"]: r["id"] for r in graph.get("appRoles", [])}
        for permission in GRAPH_PERMISSIONS:
            if permission not in offered:
                die(f"Microsoft Graph in the double does not offer {permission}")
            self.az.graph(
                "POST",
                f"servicePrincipals/{sp}/appRoleAssignments",
                {"principalId": sp, "resourceId": graph["id"], "appRoleId": offered[permission]},
            )
        for subscription in (PROD_SUBSCRIPTION, FINANCE_SUBSCRIPTION):
            for role in ("Owner", "Key Vault Administrator"):
                self.assign(f"/subscriptions/{subscription}", role, "closeout-client", "ServicePrincipal",
                            f"Closeout's client: {role}", who="closeout")
        self.note(
            f"Closeout's client {CLIENT_ID}: Graph {', '.join(GRAPH_PERMISSIONS)}; Owner and Key "
            "Vault Administrator on both subscriptions"
        )

    # --- ARM building blocks -------------------------------------------------------------------

    def role_definition_id(self, scope, role_name):
        key = (scope.split("/resourceGroups/")[0], role_name)
        if key not in self.role_ids:
            found = self.az.arm(
                "GET",
                f"{scope}/providers/Microsoft.Authorization/roleDefinitions",
                API_AUTHZ,
                params={"$filter": f"roleName eq '{role_name}'"},
            ).get("value", [])
            if len(found) != 1:
                die(f"role definition '{role_name}' not found at {scope} ({len(found)} matches)")
            self.role_ids[key] = found[0]["id"]
        return self.role_ids[key]

    def assign(self, scope, role_name, principal, principal_type, description, condition=None,
               who="colleagues", via_group=None):
        """Assign a role to `principal` (a name in self.ids) at `scope`; recorded for `who`."""
        principal_id = self.ids[principal]
        properties = {
            "roleDefinitionId": self.role_definition_id(scope, role_name),
            "principalId": principal_id,
            "principalType": principal_type,
            "description": description,
        }
        if condition:
            properties.update(condition=condition, conditionVersion="2.0")
        name = str(uuid.uuid4())
        assignment_id = self.az.arm(
            "PUT",
            f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
            API_AUTHZ,
            {"properties": properties},
        )["id"]
        self.created[who]["role_assignments"].append(
            {
                "id": assignment_id,
                "role": role_name,
                "scope": scope,
                "principal": principal,
                "principal_id": principal_id,
                "via_group": via_group,
                "condition": bool(condition),
            }
        )
        return assignment_id

    def resource_group(self, subscription, name, tags):
        self.az.arm(
            "PUT",
            f"/subscriptions/{subscription}/resourcegroups/{name}",
            API_RG,
            {"location": LOCATION, "tags": tags},
        )
        return f"/subscriptions/{subscription}/resourceGroups/{name}"

    def vault(self, rg_scope, name, rbac, access_policies=(), tags=None):
        answer = self.az.arm(
            "PUT",
            f"{rg_scope}/providers/Microsoft.KeyVault/vaults/{name}",
            API_KV_MGMT,
            {
                "location": LOCATION,
                "tags": tags or {},
                "properties": {
                    "tenantId": TENANT_ID,
                    "sku": {"family": "A", "name": "standard"},
                    "enableRbacAuthorization": rbac,
                    "accessPolicies": list(access_policies),
                    "enableSoftDelete": True,
                    "softDeleteRetentionInDays": 90,
                    "publicNetworkAccess": "Enabled",
                },
            },
        )
        uri = answer["properties"]["vaultUri"]
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme != "https" or not (vault_host(parts.hostname) or is_loopback(parts.hostname)):
            die(f"vault {name} has vaultUri {uri}: not a loopback or *.{VAULT_DNS_SUFFIX} address")
        self.created["vaults"][name] = {
            "id": answer["id"],
            "uri": uri,
            "model": "rbac" if rbac else "access-policy",
        }
        return answer["id"], uri

    def policy(self, vault, principal, secrets_=(), keys=(), certificates=(), who="colleagues",
               via_group=None):
        """An access policy for `principal` (a name in self.ids), recorded for `who`."""
        object_id = self.ids[principal]
        self.created[who]["access_policies"].append(
            {"vault": vault, "principal": principal, "object_id": object_id, "via_group": via_group}
        )
        return {
            "tenantId": TENANT_ID,
            "objectId": object_id,
            "permissions": {
                "secrets": list(secrets_),
                "keys": list(keys),
                "certificates": list(certificates),
            },
        }

    # --- Key Vault data-plane building blocks --------------------------------------------------

    @staticmethod
    def _version(item_id):
        return item_id.rstrip("/").rsplit("/", 1)[-1]

    def record(self, who, collection, vault, name, item_id, reach):
        self.created[who][collection].append(
            {"vault": vault, "name": name, "version": self._version(item_id), "reach": reach}
        )

    def secret(self, vault, name, value, tags=None, content_type="text/plain", who="colleagues", reach=None):
        uri = self.created["vaults"][vault]["uri"]
        answer = self.az.kv(
            "PUT",
            uri,
            f"secrets/{name}",
            {"value": value, "contentType": content_type, "tags": tags or {}},
        )
        self.record(who, "secrets", vault, name, answer["id"], reach)

    def key(self, vault, name, tags=None, who="colleagues", reach=None):
        uri = self.created["vaults"][vault]["uri"]
        answer = self.az.kv(
            "POST",
            uri,
            f"keys/{name}/create",
            {
                "kty": "RSA",
                "key_size": 2048,
                "key_ops": ["sign", "verify", "wrapKey", "unwrapKey", "encrypt", "decrypt"],
                "tags": tags or {},
            },
        )
        self.record(who, "keys", vault, name, answer["key"]["kid"], reach)

    def certificate(self, vault, name, subject, dns_names, tags=None, who="colleagues", reach=None):
        uri = self.created["vaults"][vault]["uri"]
        operation = self.az.kv(
            "POST",
            uri,
            f"certificates/{name}/create",
            {
                "policy": {
                    "key_props": {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False},
                    "secret_props": {"contentType": "application/x-pkcs12"},
                    "x509_props": {
                        "subject": subject,
                        "sans": {"dns_names": list(dns_names)},
                        "validity_months": 12,
                    },
                    "issuer": {"name": "Self"},
                },
                "tags": tags or {},
            },
            expect=(200, 202),
        )
        # Self-signed certificates complete at once in Key Vault; poll briefly all the same.
        for _ in range(50):
            status = (operation.get("status") or "").lower()
            if status == "completed":
                break
            if status != "inprogress":
                die(f"certificate {vault}/{name}: creation ended with status {operation.get('status')!r}")
            time.sleep(0.2)
            operation = self.az.kv("GET", uri, f"certificates/{name}/pending")
        else:
            die(f"certificate {vault}/{name}: still pending after 10 s")
        answer = self.az.kv("GET", uri, f"certificates/{name}")
        self.record(who, "certificates", vault, name, answer["id"], reach)

    # --- Entra beyond groups: directory roles, PIM, owned groups, app roles, grants, methods ---

    def directory_role(self, user, role, how):
        """`how`: "assigned" (roleAssignments), "active" or "eligible" (a PIM adminAssign)."""
        body = {"principalId": user, "roleDefinitionId": DIRECTORY_ROLES[role], "directoryScopeId": "/"}
        if how == "assigned":
            return self.az.graph("POST", "roleManagement/directory/roleAssignments", body)
        collection = "roleAssignmentScheduleRequests" if how == "active" else "roleEligibilityScheduleRequests"
        body.update({"action": "adminAssign", "justification": "on-call rota",
                     "scheduleInfo": {"startDateTime": iso(datetime.datetime.now(datetime.timezone.utc)),
                                      "expiration": {"type": "noExpiration"}}})
        return self.az.graph("POST", f"roleManagement/directory/{collection}", body)

    def seed_method(self, user, collection, body):
        """A method the user registers herself (FIDO2, Authenticator): the double's seed route."""
        url = f"{self.az.base}/_double/users/{user}/authentication/{collection}"
        r = self.az._request("POST", url, json=body)
        if r.status_code != 201:
            self.az._fail("POST", url, r)
        return r.json()

    def entra_access(self, alice, carol, apps):
        az = self.az
        graph_sp = az.graph("GET", f"servicePrincipals(appId='{GRAPH_APP_ID}')", params={"$select": "id"})["id"]
        entra = {"alice": [], "carol": []}
        for who, user in (("alice", alice), ("carol", carol)):
            # Both are eligible (PIM) for User Administrator; Alice also holds Helpdesk
            # Administrator directly and Groups Administrator as an active PIM assignment.
            roles = [("User Administrator", "eligible")]
            if who == "alice":
                roles += [("Helpdesk Administrator", "assigned"), ("Groups Administrator", "active")]
            for role, how in roles:
                self.directory_role(user, role, how)
                entra[who].append(f"directory role {role} ({how})")
            oncall_bot = apps["oncall-bot"]["service_principal_id"]
            az.graph("POST", f"users/{user}/appRoleAssignments",
                     {"principalId": user, "resourceId": oncall_bot, "appRoleId": DEFAULT_ACCESS})
            az.graph("POST", "oauth2PermissionGrants",
                     {"clientId": oncall_bot, "consentType": "Principal", "principalId": user,
                      "resourceId": graph_sp, "scope": "User.Read Calendars.Read"})
            az.graph("POST", f"users/{user}/authentication/phoneMethods",
                     {"phoneNumber": "+44 7700900001" if who == "alice" else "+351 912345678",
                      "phoneType": "mobile"})
            self.seed_method(user, "fido2Methods", {"displayName": "YubiKey 5C NFC", "model": "YubiKey 5C NFC"})
            entra[who] += ["app role (default access) of oncall-bot", "delegated grant to oncall-bot",
                           "phone", "FIDO2 key"]
        self.seed_method(alice, "microsoftAuthenticatorMethods",
                         {"displayName": "Alice's phone", "deviceTag": "SoftwareTokenActivated"})
        az.graph("POST", f"users/{alice}/authentication/temporaryAccessPassMethods", {"lifetimeInMinutes": 480})
        entra["alice"] += ["Microsoft Authenticator", "temporary access pass"]
        # Alice and Carol own the on-call rota's group: Alice's share passes to Bob (her manager).
        oncall = self.created["groups"]["platform-oncall"]
        for user in (alice, carol):
            az.graph("POST", f"groups/{oncall}/owners/$ref", {"@odata.id": GRAPH_REF + user})
        entra["alice"].append("owner of group platform-oncall")
        entra["carol"].append("owner of group platform-oncall")
        self.created["entra"] = entra
        self.note(
            "Entra: Alice holds Helpdesk Administrator, Groups Administrator (active PIM) and is "
            "eligible for User Administrator (PIM); she and Carol co-own platform-oncall, hold "
            "oncall-bot's default app role and consented it User.Read Calendars.Read, and have a "
            "phone and a FIDO2 key (Alice also Authenticator and a temporary access pass)"
        )

    # --- the organisation ----------------------------------------------------------------------

    def seed(self, canary, canary_password=None):
        az = self.az
        if az.graph("GET", "users", params={"$filter": f"userPrincipalName eq '{ALICE_EMAIL}'"}).get("value"):
            die(
                f"this double already holds the demo organisation ({ALICE_EMAIL} exists); seed a "
                "fresh one (scripts/emulators.sh stop && scripts/emulators.sh start)"
            )
        a = self.created["alice"]

        # --- Entra: people, manager, nested groups ------------------------------------------------
        with open(HR_CSV, newline="") as f:
            rows = {row["email"]: row for row in csv.DictReader(f)}
        users = {}
        for email in PEOPLE:
            if email not in rows:
                die(f"{email} is not in {HR_CSV}")
            password = canary_password if email == ALICE_EMAIL else None
            users[email.split("@")[0]] = self.user(rows[email], password)
        self.created["users"] = dict(users)
        alice, bob, carol, grace = (users[n] for n in ("alice.nguyen", "bob.martin", "carol.diaz", "grace.kim"))
        az.graph("PUT", f"users/{alice}/manager/$ref", {"@odata.id": GRAPH_REF + bob})
        az.graph("PUT", f"users/{carol}/manager/$ref", {"@odata.id": GRAPH_REF + bob})
        self.note(
            "users (UPN = mail = the HR email, employeeId = the HR id): alice.nguyen (E1001), "
            "bob.martin (E1000, manager of Alice and Carol), carol.diaz (E1002), erin.walsh "
            "(E1004), grace.kim (E1005)"
        )

        engineering = self.group("engineering", "All engineers")
        platform = self.group("platform", "Platform team")
        oncall = self.group("platform-oncall", "Platform on-call rota")
        finance = self.group("finance", "Finance team")
        self.add_member(engineering, platform)
        self.add_member(engineering, bob)
        self.add_member(platform, oncall)
        self.add_member(oncall, alice)
        self.add_member(oncall, carol)
        self.add_member(finance, grace)
        self.created["groups"] = {
            "engineering": engineering,
            "platform": platform,
            "platform-oncall": oncall,
            "finance": finance,
        }
        self.ids.update(users)
        self.ids.update(self.created["groups"])
        a["group_memberships"].append({"group": "platform-oncall", "group_id": oncall, "member_id": alice})
        self.note(
            "groups: platform-oncall (alice.nguyen, carol.diaz) < platform < engineering "
            "(also bob.martin); finance (grace.kim)"
        )

        # --- ARM: management groups, subscriptions, resource groups -------------------------------
        root_mg = f"/providers/Microsoft.Management/managementGroups/{TENANT_ID}"
        for name, display, parent in (
            ("corp", "Example Corp", root_mg),
            ("corp-finance", "Example Corp Finance", "/providers/Microsoft.Management/managementGroups/corp"),
        ):
            az.arm(
                "PUT",
                f"/providers/Microsoft.Management/managementGroups/{name}",
                API_MG,
                {"properties": {"displayName": display, "details": {"parent": {"id": parent}}}},
            )
        for alias, sub_id, display, mg in (
            ("example-prod", PROD_SUBSCRIPTION, "Example Corp Production", "corp"),
            ("example-finance", FINANCE_SUBSCRIPTION, "Example Corp Finance", "corp-finance"),
        ):
            az.arm(
                "PUT",
                f"/providers/Microsoft.Subscription/aliases/{alias}",
                API_ALIAS,
                {
                    "properties": {
                        "displayName": display,
                        "workload": "Production",
                        "billingScope": "/providers/Microsoft.Billing/billingAccounts/demo/enrollmentAccounts/demo",
                        "subscriptionId": sub_id,
                        "additionalProperties": {
                            "managementGroupId": f"/providers/Microsoft.Management/managementGroups/{mg}",
                            "tags": {"environment": "demo"},
                        },
                    }
                },
            )
        self.note(
            f"management groups: tenant root > corp > corp-finance; subscriptions Example Corp "
            f"Production ({PROD_SUBSCRIPTION}, in corp) and Example Corp Finance "
            f"({FINANCE_SUBSCRIPTION}, in corp-finance)"
        )
        rg = {}
        for sub, name in (
            (PROD_SUBSCRIPTION, "rg-platform"),
            (PROD_SUBSCRIPTION, "rg-payments"),
            (PROD_SUBSCRIPTION, "rg-data"),
            (PROD_SUBSCRIPTION, "rg-oncall"),
            (PROD_SUBSCRIPTION, "rg-closeout"),
            (FINANCE_SUBSCRIPTION, "rg-finance"),
        ):
            rg[name] = self.resource_group(sub, name, {"team": name.removeprefix("rg-")})

        # --- Applications (before the vaults: kv-platform's policy names deploy-pipeline) ----------
        apps = {}
        for name, description, owners, who in (
            ("deploy-pipeline", "CI/CD deployments", [alice], "alice"),
            ("cost-report", "Nightly cloud cost report", [alice], "alice"),
            ("oncall-bot", "Pages the on-call engineer", [alice, carol], "alice"),
            ("metrics-exporter", "Exports vault metrics", [carol], "colleagues"),
        ):
            app, sp = self.application(name, description, owners)
            password = self.add_password(app, f"{name} client secret")
            record = {
                "display_name": name,
                "id": app["id"],
                "app_id": app["appId"],
                "service_principal_id": sp["id"],
                "owners": list(owners),
                "password_key_ids": [password["keyId"]],
                "client_secrets": [password["secretText"]],
                "key_credential_key_ids": [],
            }
            if name == "deploy-pipeline":
                key_id, thumbprint = self.add_certificate(app, "deploy-pipeline.example.com")
                record["key_credential_key_ids"].append(key_id)
                record["key_credential_thumbprints"] = [thumbprint]
            # The secret works at the token endpoint (it is not kept beyond the credentials file).
            az.token(GRAPH_SCOPE, client_id=app["appId"], client_secret=password["secretText"])
            self.created[who]["applications"].append(record)
            apps[name] = record
            self.ids[f"{name} (service principal)"] = sp["id"]
        self.note(
            "applications (each with a service principal and a client secret): deploy-pipeline "
            "(owner Alice; also a certificate credential), cost-report (owner Alice), oncall-bot "
            "(owners Alice and Carol), metrics-exporter (owner Carol)"
        )

        self.entra_access(alice, carol, apps)

        # --- Key Vaults and who reaches them -------------------------------------------------------
        # (a) kv-platform: access policies for bob and deploy-pipeline only; Alice's path is
        # Key Vault Contributor of engineering (her group chain) on rg-platform.
        deploy_sp = "deploy-pipeline (service principal)"
        self.vault(
            rg["rg-platform"],
            "kv-platform",
            rbac=False,
            access_policies=[
                self.policy("kv-platform", "bob.martin", SECRET_PERMISSIONS_READ, ["get", "list"], ["get", "list"]),
                self.policy("kv-platform", deploy_sp, ["get"]),
            ],
        )
        self.assign(rg["rg-platform"], "Key Vault Contributor", "engineering", "Group",
                    "Engineering manages platform vaults", who="alice", via_group="engineering")
        self.note(
            "kv-platform (access policies: bob.martin, deploy-pipeline): engineering has Key Vault "
            "Contributor on rg-platform, so Alice (platform-oncall < platform < engineering) can "
            "give herself an access policy"
        )

        # (b) kv-payments: RBAC; Alice's conditioned RBAC Administrator on rg-payments.
        kv_payments, _ = self.vault(rg["rg-payments"], "kv-payments", rbac=True)
        self.assign(rg["rg-payments"], "Role Based Access Control Administrator", "alice.nguyen", "User",
                    "Alice delegates payments secret readers", condition=ONLY_SECRETS_USER, who="alice")
        self.assign(kv_payments, "Key Vault Secrets Officer", "erin.walsh", "User",
                    "Security maintains payments secrets")
        self.note(
            "kv-payments (RBAC): Alice holds Role Based Access Control Administrator on rg-payments, "
            "conditioned to assigning Key Vault Secrets User only (a path); erin.walsh has Key Vault "
            "Secrets Officer on the vault"
        )

        # (c) kv-data: RBAC; direct Secrets User for Alice (and Carol), Certificate User for platform.
        kv_data, _ = self.vault(rg["rg-data"], "kv-data", rbac=True)
        self.assign(kv_data, "Key Vault Secrets User", "alice.nguyen", "User", "Alice reads ETL secrets",
                    who="alice")
        self.assign(kv_data, "Key Vault Certificate User", "platform", "Group",
                    "Platform reads ingest certificates", who="alice", via_group="platform")
        self.assign(kv_data, "Key Vault Secrets User", "carol.diaz", "User", "Carol reads ETL secrets")
        self.note(
            "kv-data (RBAC): Key Vault Secrets User for Alice directly and for Carol directly (hers "
            "stays); Key Vault Certificate User for group platform"
        )

        # (d) kv-oncall: access policies naming Alice, her group platform-oncall and Carol.
        self.vault(
            rg["rg-oncall"],
            "kv-oncall",
            rbac=False,
            access_policies=[
                self.policy("kv-oncall", "alice.nguyen", ["get", "list", "set"], ["get", "list", "sign"],
                            who="alice"),
                self.policy("kv-oncall", "platform-oncall", SECRET_PERMISSIONS_READ, who="alice",
                            via_group="platform-oncall"),
                self.policy("kv-oncall", "carol.diaz", SECRET_PERMISSIONS_READ, ["get"]),
            ],
        )
        self.note(
            "kv-oncall (access policies): Alice directly (secrets get/list/set, keys get/list/sign), "
            "group platform-oncall (secrets get/list), carol.diaz directly (stays)"
        )

        # (e) kv-finance: another subscription; grace and finance only.
        kv_finance, _ = self.vault(rg["rg-finance"], "kv-finance", rbac=True)
        self.assign(kv_finance, "Key Vault Secrets Officer", "grace.kim", "User", "Grace runs finance secrets")
        self.assign(kv_finance, "Key Vault Secrets User", "finance", "Group", "Finance reads its secrets")
        # Erin, the break-glass admin, owns everything under corp; Carol reads a finance resource group.
        self.assign("/providers/Microsoft.Management/managementGroups/corp", "Owner", "erin.walsh", "User",
                    "Break-glass administration")
        self.assign(rg["rg-finance"], "Reader", "carol.diaz", "User", "Carol reviews finance infrastructure")
        self.note(
            "kv-finance (RBAC, finance subscription): grace.kim Key Vault Secrets Officer, group "
            "finance Key Vault Secrets User; out of Alice's reach. Also: erin.walsh Owner on "
            "management group corp, carol.diaz Reader on rg-finance"
        )

        # The ops vault: where Closeout publishes rotated application credentials.
        kv_ops, _ = self.vault(rg["rg-closeout"], "kv-closeout-ops", rbac=True)
        self.assign(kv_ops, "Key Vault Secrets User", deploy_sp, "ServicePrincipal",
                    "deploy-pipeline picks up its credential")
        self.note(
            "kv-closeout-ops (RBAC): where rotated application credentials are published; "
            "deploy-pipeline's service principal reads it"
        )

        self.grant_closeout_client()

        # --- Read back the directory and RBAC the summary claims ----------------------------------
        groups = az.graph("GET", f"users/{alice}/transitiveMemberOf/microsoft.graph.group",
                          params={"$top": "50"}).get("value", [])
        names = sorted(g["displayName"] for g in groups)
        if names != ["engineering", "platform", "platform-oncall"]:
            die(f"Alice's transitive groups are {names}, expected engineering, platform, platform-oncall")
        manager = az.graph("GET", f"users/{alice}/manager")
        if manager.get("id") != bob:
            die("Alice's manager is not bob.martin")
        mine = az.arm(
            "GET",
            f"/subscriptions/{PROD_SUBSCRIPTION}/providers/Microsoft.Authorization/roleAssignments",
            API_AUTHZ,
            params={"$filter": f"assignedTo('{alice}')", "$top": "50"},
        ).get("value", [])
        want = {r["id"].lower() for r in a["role_assignments"]}
        got = {r["id"].lower() for r in mine}
        if want != got:
            die(f"role assignments reaching Alice in the production subscription: {len(got)}, expected {len(want)}")

        # --- Secrets, keys and certificates (the data plane) --------------------------------------
        owned = {"owner": ALICE_EMAIL}
        self.secret("kv-platform", "terraform-state-key", random_value(), who="alice", reach="indirect")
        self.secret("kv-platform", "ci-deploy-token", random_value(), who="alice", reach="indirect")
        self.key("kv-platform", "platform-signing", who="alice", reach="indirect")

        self.secret("kv-payments", "stripe-api-key", random_value(), who="alice", reach="indirect")
        self.secret("kv-payments", "payments-db-password", random_value(), who="alice", reach="indirect")
        self.certificate("kv-payments", "payments-mtls", "CN=payments.internal.example.com",
                         ["payments.internal.example.com"], who="alice", reach="indirect")

        self.secret("kv-data", "warehouse-password", random_value(), who="alice", reach="direct")
        self.secret("kv-data", "etl-api-token", f"{canary}-{random_value()}", who="alice", reach="direct")
        self.certificate("kv-data", "data-ingest-tls", "CN=ingest.data.example.com",
                         ["ingest.data.example.com"], who="alice", reach="direct")

        pg = load_pg_seed()
        if pg:
            # The payments database's login (scripts/emulators.sh runs PostgreSQL): rotated at the
            # database by the strategy its tag names, every field but the password kept.
            self.secret(
                "kv-data",
                "payments-postgres",
                json.dumps({"engine": "postgres", "host": pg["host"], "port": pg["port"],
                            "dbname": pg["dbname"], "username": "payments_keyvault",
                            "password": pg["passwords"]["payments_keyvault"]}),
                content_type="application/json",
                tags={"closeout:rotation": "postgresql-single-user"},
                who="alice",
                reach="direct",
            )
            self.note(
                f"kv-data payments-postgres: the payments database's login payments_keyvault "
                f"(PostgreSQL 127.0.0.1:{pg['port']}; tag closeout:rotation = postgresql-single-user)"
            )

        self.secret("kv-oncall", "pagerduty-integration-key", random_value(), who="alice", reach="direct")
        self.secret("kv-oncall", "statuspage-token", random_value(), tags=owned, who="alice", reach="direct")
        self.key("kv-oncall", "oncall-webhook-signing", who="alice", reach="direct")

        self.secret("kv-finance", "ledger-db-password", random_value(), tags={"owner": "grace.kim@example.com"})
        self.secret("kv-finance", "bank-sftp-password", random_value())
        self.secret("kv-finance", "alice-expense-export", random_value(), tags=owned, who="alice", reach="owner")

        deploy = apps["deploy-pipeline"]
        self.secret(
            "kv-closeout-ops",
            f"app-{slug(deploy['display_name'])}-credential",
            json.dumps({"tenantId": TENANT_ID, "clientId": deploy["app_id"],
                        "clientSecret": deploy["client_secrets"][0]}),
            content_type="application/json",
            tags={"app_id": deploy["app_id"], "managed-by": "closeout"},
        )
        self.note(
            "secrets Alice reaches: kv-platform terraform-state-key, ci-deploy-token, key "
            "platform-signing; kv-payments stripe-api-key, payments-db-password, certificate "
            "payments-mtls; kv-data warehouse-password, etl-api-token, certificate data-ingest-tls; "
            "kv-oncall pagerduty-integration-key, statuspage-token (also owner = her email), key "
            "oncall-webhook-signing"
        )
        self.note(
            "secrets out of her reach: kv-finance ledger-db-password, bank-sftp-password, and "
            "alice-expense-export (owner = her email, so still hers); kv-closeout-ops "
            "app-deploy-pipeline-credential (deploy-pipeline's current client secret, read by its "
            "service principal, not by her)"
        )


def double_url():
    url = os.environ.get("AZURE_DOUBLE_URL")
    if not url:
        die("AZURE_DOUBLE_URL is not set: eval \"$(scripts/emulators.sh env)\" first")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not is_loopback(parts.hostname or ""):
        die(f"refusing to seed {url}: this script is for the local Azure double (https on loopback) only")
    return url


def load_canary(canary_file):
    """The canary already in the file (written by the other seeds), else a new one written there."""
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
    url = double_url()
    ca_file = pathlib.Path(os.environ.get("AZURE_DOUBLE_CA_FILE") or REPO / ".emulators" / "azure-double" / "ca.pem")
    if not ca_file.is_file():
        die(f"the double's CA {ca_file} does not exist: start it with scripts/emulators.sh start")
    client_secret = os.environ.get("AZURE_CLIENT_SECRET")
    if not client_secret:
        die("AZURE_CLIENT_SECRET is not set: eval \"$(scripts/emulators.sh env)\" first")

    canary_file = pathlib.Path(os.environ.get("CLOSEOUT_CANARY_FILE") or REPO / ".emulators" / "demo-canary.txt")
    canary = load_canary(canary_file)
    canary_password = f"{canary}-{random_value()}" if os.environ.get("CLOSEOUT_CANARY_FILE") else None

    seeder = Seeder(Azure(url, ca_file, client_secret))
    seeder.seed(canary, canary_password)
    credentials_file = os.environ.get("CLOSEOUT_SEED_CREDENTIALS_FILE")
    if credentials_file:
        path = pathlib.Path(credentials_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(seeder.created, f)

    print(f"seeded the demo organisation into the Azure double at {url} (tenant {TENANT_ID}):")
    for line in seeder.summary:
        print(f"  - {line}")
    where = "kv-data/etl-api-token"
    if canary_password:
        where += " and Alice's Entra password"
    print(f"  canary planted in {where}; value in {canary_file}")


if __name__ == "__main__":
    main()
