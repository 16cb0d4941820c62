#!/usr/bin/env python3
"""Seed the demo's payments database into the throwaway PostgreSQL cluster scripts/emulators.sh
starts (DEMO_PG_PORT, DEMO_PG_PASSWORD, DEMO_PG_BIN from `scripts/emulators.sh env`).

The payments database has one login role per place its credentials are kept, so each rotation
is its own (a leaver could have copied any of them):

- payments_app       its credentials in the Secrets Manager secret prod/payments/db (seed_aws.py)
- payments_kv        in the Vault KV v2 secret secret/payments/db (seed_vault.py)
- payments_keyvault  in the Key Vault secret payments-db of kv-payments (seed_azure.py)
- payments_static    a Vault database-engine static role (seed_vault.py)
- vault_admin        the Vault database engine's own connection user (CREATEROLE: it creates
                     the dynamic users and rotates the static one)

Passwords are random; the seeds of the other emulators read them from the file this script
writes (DEMO_PG_SEED, default .emulators/postgres-seed.json, mode 0600), so a password is
typed nowhere else. Each role owns a table, so a rotation that breaks a role is visible.
"""

import json
import os
import secrets
import subprocess
import sys

ROLES = ["payments_app", "payments_kv", "payments_keyvault", "payments_static", "vault_admin"]


def die(message):
    print(f"seed_postgres: error: {message}", file=sys.stderr)
    sys.exit(1)


def psql(port, password, pg_bin, sql, database="postgres"):
    out = subprocess.run(
        [
            os.path.join(pg_bin, "psql"),
            "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
        ],
        env={**os.environ, "PGPASSWORD": password},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        # The statement is not echoed: it holds passwords.
        die(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def main():
    port = os.environ.get("DEMO_PG_PORT") or die(
        "DEMO_PG_PORT is not set: eval \"$(scripts/emulators.sh env)\" after scripts/emulators.sh start"
    )
    password = os.environ.get("DEMO_PG_PASSWORD") or die("DEMO_PG_PASSWORD is not set")
    pg_bin = os.environ.get("DEMO_PG_BIN", "/usr/lib/postgresql/15/bin")
    seed_file = os.environ.get("DEMO_PG_SEED", ".emulators/postgres-seed.json")

    psql(port, password, pg_bin, "CREATE DATABASE payments")
    passwords = {}
    for role in ROLES:
        pw = secrets.token_urlsafe(24)
        passwords[role] = pw
        extra = " CREATEROLE" if role == "vault_admin" else ""
        psql(port, password, pg_bin, f"CREATE ROLE {role} LOGIN{extra} PASSWORD '{pw}'")
        psql(
            port, password, pg_bin,
            f"CREATE TABLE {role}_ledger (id serial PRIMARY KEY, note text); "
            f"ALTER TABLE {role}_ledger OWNER TO {role}",
            database="payments",
        )
    psql(port, password, pg_bin, "GRANT ALL ON DATABASE payments TO vault_admin")

    fd = os.open(seed_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"host": "127.0.0.1", "port": int(port), "dbname": "payments", "passwords": passwords}, f)
    print(
        f"seed_postgres: payments database on 127.0.0.1:{port}: roles {', '.join(ROLES)} "
        f"(passwords in {seed_file})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
