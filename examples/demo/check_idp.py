#!/usr/bin/env python3
"""After the leaver: show, from the servers themselves, that Alice's identity-provider sessions
and app accounts are closed and Carol's are not. Reads the tokens seed_idp.py saved (never
prints them). Exit 1 if anything of Alice's still works or anything of Carol's stopped working.

Usage: .venv/bin/python examples/demo/check_idp.py [TOKENS_FILE]
"""

import json
import os
import pathlib
import sys

import requests

REPO = pathlib.Path(__file__).resolve().parents[2]
KC = os.environ["KEYCLOAK_URL"]


def refresh(tok, secret):
    r = requests.post(f"{KC}/realms/acme/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "refresh_token", "client_id": "portal", "client_secret": secret, "refresh_token": tok})
    return "works" if r.status_code == 200 else f"refused ({r.json().get('error')})"


def scim_user(app, uid):
    base, tok = os.environ[f"{app.upper()}_SCIM_URL"], os.environ[f"{app.upper()}_SCIM_TOKEN"]
    r = requests.get(f"{base}/Users/{uid}", headers={"Authorization": f"Bearer {tok}"}, timeout=30)
    if r.status_code == 404:
        return "deleted"
    return "active" if r.json().get("active", True) else "inactive"


def main():
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / ".closeout-dev" / "idp-tokens.json"
    t = json.loads(path.read_text())
    rows = [
        ("Alice's refresh token (Keycloak)", refresh(t["alice_refresh"], t["portal_secret"]), False),
        ("Alice's offline token (Keycloak)", refresh(t["alice_offline"], t["portal_secret"]), False),
        ("Carol's refresh token (Keycloak)", refresh(t["carol_refresh"], t["portal_secret"]), True),
        ("Alice's wiki account", scim_user("wiki", t["scim"]["wiki"]["E1001"]), False),
        ("Alice's crm account", scim_user("crm", t["scim"]["crm"]["E1001"]), False),
        ("Carol's wiki account", scim_user("wiki", t["scim"]["wiki"]["E1002"]), True),
        ("Carol's crm account", scim_user("crm", t["scim"]["crm"]["E1002"]), True),
    ]
    bad = False
    for what, state, should_work in rows:
        works = state in ("works", "active")
        ok = works == should_work
        bad |= not ok
        print(f"  {'ok ' if ok else 'BAD'}  {what}: {state}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
