"""Signs one request with JD Cloud's own Python SDK signer (jdcloud_sdk_core 1.3.3,
JDCLOUD2-HMAC-SHA256) and prints the headers the SDK would send, as JSON.

stdin: {"method", "url", "body", "ak", "sk", "region", "service",
        "headers": {...} (default Content-Type: application/json),
        "now": epoch seconds or null (default: the clock), "nonce": str or null}
"""
import datetime
import json
import sys

from jdcloud_sdk.core import signer as signer_mod
from jdcloud_sdk.core.credential import Credential
from jdcloud_sdk.core.logger import Logger
from jdcloud_sdk.core.signer import Signer

req = json.load(sys.stdin)
if req.get("now") is not None:
    when = datetime.datetime.utcfromtimestamp(req["now"])
    Signer._Signer__now = lambda self: when
if req.get("nonce"):
    signer_mod.uuid.uuid4 = lambda: req["nonce"]
headers = dict(req.get("headers") or {"Content-Type": "application/json"})
Signer(Logger(0)).sign(
    method=req["method"],
    service=req.get("service", "apigateway"),
    region=req.get("region", "cn-north-1"),
    uri=req["url"],
    headers=headers,
    data=req.get("body", ""),
    credential=Credential(req["ak"], req["sk"]),
    security_token="",
)
json.dump(headers, sys.stdout)
