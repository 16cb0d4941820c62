#!/usr/bin/env python3
"""Seed the identity provider (Keycloak) and the two downstream SCIM apps with the demo
organisation of examples/demo/hr.csv, through their real APIs only.

Keycloak realm `acme`: every person of hr.csv is a user (attribute employee_id = the HR id, the
work email, a random password); a confidential client `portal` people sign in to; nested groups
/engineering/platform (the parent carries realm role `engineering`); realm role `oncall`; a
service-account client `deploy-bot` whose `owner` attribute names Alice. Alice Nguyen (E1001) is
in /engineering/platform with role oncall and signs in to the portal twice (an online session
and an offline token); Carol Diaz (E1002), her colleague, signs in too.

SCIM apps: "wiki" matches people by externalId (the HR id) and names them by a short userName;
"crm" matches by email. Everyone exists in both; Alice and Carol share groups in each.

Usage:
    eval "$(scripts/emulators.sh env)"
    .venv/bin/python examples/demo/seed_idp.py [TOKENS_FILE]

Environment: KEYCLOAK_URL, KEYCLOAK_ADMIN_USER, KEYCLOAK_ADMIN_CREDENTIAL, WIKI_SCIM_URL,
WIKI_SCIM_TOKEN, CRM_SCIM_URL, CRM_SCIM_TOKEN (all from scripts/emulators.sh env).

TOKENS_FILE (default .closeout-dev/idp-tokens.json, mode 0600) receives Alice's and Carol's
refresh and offline tokens and the portal's client secret, so examples/demo/check_idp.py can
present them after the leaver; nothing secret is printed. Assumes fresh servers.
"""

import csv
import json
import os
import pathlib
import secrets
import sys

import requests

REPO = pathlib.Path(__file__).resolve().parents[2]
REALM = "acme"


def die(message):
    print(f"seed_idp: error: {message}", file=sys.stderr)
    sys.exit(1)


def env(name):
    value = os.environ.get(name, "").strip()
    if not value:
        die(f"{name} is not set: eval \"$(scripts/emulators.sh env)\" first")
    return value


KC = env("KEYCLOAK_URL")


def admin_token():
    r = requests.post(f"{KC}/realms/master/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "admin-cli",
        "username": env("KEYCLOAK_ADMIN_USER"), "password": env("KEYCLOAK_ADMIN_CREDENTIAL")}, timeout=30)
    if r.status_code != 200:
        die(f"admin sign-in refused: HTTP {r.status_code}")
    return r.json()["access_token"]


def kc(method, path, body=None):
    url = f"{KC}/admin/realms" if path is None else f"{KC}/admin/realms/{REALM}{path}"
    r = requests.request(method, url, json=body, headers={"Authorization": f"Bearer {admin_token()}"}, timeout=30)
    if r.status_code >= 300:
        die(f"{method} {url}: HTTP {r.status_code}: {r.text[:200]}")
    return r.json() if r.text.strip() else None


def token(form):
    r = requests.post(f"{KC}/realms/{REALM}/protocol/openid-connect/token", data=form, timeout=30)
    if r.status_code != 200:
        die(f"sign-in refused: HTTP {r.status_code}: {r.json().get('error')}")
    return r.json()


def scim(base, tok, method, path, body=None):
    r = requests.request(method, f"{base}{path}", data=json.dumps(body) if body else None, timeout=30,
                         headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/scim+json"})
    if r.status_code >= 300:
        die(f"SCIM {method} {base}{path}: HTTP {r.status_code}: {r.text[:200]}")
    return r.json() if r.text.strip() else None


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / ".closeout-dev" / "idp-tokens.json"
    people = [p for p in csv.DictReader(open(REPO / "examples/demo/hr.csv")) if p["kind"] == "human"]

    # ---- Keycloak ------------------------------------------------------------------------------
    kc("POST", None, {"realm": REALM, "enabled": True})
    profile = kc("GET", "/users/profile")
    profile["unmanagedAttributePolicy"] = "ENABLED"
    kc("PUT", "/users/profile", profile)
    portal_secret = secrets.token_urlsafe(24)
    kc("POST", "/clients", {"clientId": "portal", "publicClient": False, "secret": portal_secret,
                            "directAccessGrantsEnabled": True, "standardFlowEnabled": False})
    kc("POST", "/clients", {"clientId": "deploy-bot", "publicClient": False, "secret": secrets.token_urlsafe(24),
                            "serviceAccountsEnabled": True, "standardFlowEnabled": False,
                            "attributes": {"owner": "alice.nguyen@example.com"}})
    for role in ("oncall", "engineering"):
        kc("POST", "/roles", {"name": role})
    kc("POST", "/groups", {"name": "engineering"})
    eng = kc("GET", "/group-by-path/engineering")["id"]
    kc("POST", f"/groups/{eng}/children", {"name": "platform"})
    platform = kc("GET", "/group-by-path/engineering/platform")["id"]
    kc("POST", f"/groups/{eng}/role-mappings/realm", [kc("GET", "/roles/engineering")])
    passwords, ids = {}, {}
    for p in people:
        username = p["email"].split("@")[0]
        passwords[p["id"]] = secrets.token_urlsafe(18)
        first, _, last = p["name"].partition(" ")
        kc("POST", "/users", {"username": username, "email": p["email"], "emailVerified": True, "enabled": True,
                              "firstName": first, "lastName": last or first,
                              "attributes": {"employee_id": [p["id"]]},
                              "credentials": [{"type": "password", "value": passwords[p["id"]], "temporary": False}]})
        ids[p["id"]] = kc("GET", f"/users?username={username}&exact=true")[0]["id"]
    oncall = kc("GET", "/roles/oncall")
    for who in ("E1001", "E1002"):
        kc("PUT", f"/users/{ids[who]}/groups/{platform}")
        kc("POST", f"/users/{ids[who]}/role-mappings/realm", [oncall])

    def sign_in(who, offline):
        username = next(p["email"] for p in people if p["id"] == who).split("@")[0]
        return token({"grant_type": "password", "client_id": "portal", "client_secret": portal_secret,
                      "username": username, "password": passwords[who],
                      "scope": "openid offline_access" if offline else "openid"})["refresh_token"]

    tokens = {"portal_secret": portal_secret,
              "alice_refresh": sign_in("E1001", False), "alice_offline": sign_in("E1001", True),
              "carol_refresh": sign_in("E1002", False)}

    # ---- SCIM apps -----------------------------------------------------------------------------
    apps = {"wiki": (env("WIKI_SCIM_URL"), env("WIKI_SCIM_TOKEN")), "crm": (env("CRM_SCIM_URL"), env("CRM_SCIM_TOKEN"))}
    scim_ids = {"wiki": {}, "crm": {}}
    for p in people:
        local = p["email"].split("@")[0]
        for app, (base, tok) in apps.items():
            body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "active": True,
                    "userName": local.replace(".", "") if app == "wiki" else p["email"],
                    "externalId": p["id"] if app == "wiki" else f"crm-{p['id'][1:]}",
                    "emails": [{"value": p["email"], "primary": True}]}
            scim_ids[app][p["id"]] = scim(base, tok, "POST", "/Users", body)["id"]
    for app, groups in {"wiki": ["platform-docs", "oncall-runbooks"], "crm": ["sales-engineering"]}.items():
        base, tok = apps[app]
        for g in groups:
            scim(base, tok, "POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                "displayName": g,
                                                "members": [{"value": scim_ids[app][w]} for w in ("E1001", "E1002")]})

    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({**tokens, "scim": scim_ids}, f)
    print(f"seed_idp: realm {REALM}: {len(people)} users, clients portal and deploy-bot (owner Alice); "
          f"Alice and Carol signed in (Alice also offline); {len(people)} people in apps wiki and crm",
          file=sys.stderr)


if __name__ == "__main__":
    main()
