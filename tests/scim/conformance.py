"""Run the scim2-tester conformance suite against a SCIM server.

Usage: conformance.py BASE_URL TOKEN   (BASE_URL is the SCIM root, e.g. http://127.0.0.1:8080/scim/v2)

check_server discovers the server itself (ServiceProviderConfig, ResourceTypes, Schemas) and then
runs create, read, list, attribute selection, replace, delete and PATCH add/replace/remove checks
on every attribute the published schemas name. Every result is printed; the exit status is 1 if
any is ERROR or CRITICAL, 2 on a usage or set-up problem.
"""

import sys
from collections import Counter

try:
    import httpx2
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import Status, check_server
except ImportError as exc:  # the Rust test shows this message when the venv is stale
    print(f"conformance: missing package ({exc}); run scripts/setup.sh", file=sys.stderr)
    sys.exit(2)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, token = sys.argv[1].rstrip("/"), sys.argv[2]
    http = httpx2.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    client = SyncSCIMClient(http)
    results = check_server(client)
    counts = Counter()
    failed = False
    for r in results:
        counts[r.status.name] += 1
        failed |= r.status in (Status.ERROR, Status.CRITICAL)
        where = f" [{r.resource_type}]" if r.resource_type else ""
        print(f"{r.status.name:<10} {r.title}{where}: {r.reason or ''}")
        if r.status in (Status.ERROR, Status.CRITICAL) and r.data is not None:
            print(f"           data: {r.data!r}")
    print("summary: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
