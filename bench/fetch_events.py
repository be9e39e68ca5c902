#!/usr/bin/env python3
"""Pages through a simulator's /events-stream and writes every event as one JSON line (stdout)."""
import json
import sys
import urllib.parse
import urllib.request

base, org, key = sys.argv[1], sys.argv[2], sys.argv[3]
url = f"{base}/admin/v1/orgs/{org}/events-stream?limit=500"
out = sys.stdout
n = 0
while True:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req) as resp:
        page = json.load(resp)
    data = page.get("data") or []
    for event in data:
        out.write(json.dumps(event, separators=(",", ":")))
        out.write("\n")
    n += len(data)
    nxt = (page.get("meta") or {}).get("next")
    if not data or not nxt:
        break
    url = f"{base}/admin/v1/orgs/{org}/events-stream?limit=500&cursor={urllib.parse.quote(nxt)}"
print(f"fetched {n} events", file=sys.stderr)
