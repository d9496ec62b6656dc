"""A call recorder in the emulator, for batchq's IAM check.

The deploy template grants each Lambda function a list of IAM actions on
named resources. Whether that list is enough (and no more than needed) is
only known from what the function's code actually calls. The Rust tests
give each function its own access key id, `fn-<function>-<random>`, and
afterwards ask the emulator which calls each key made; they compare that
with the template's policy.

So every request signed with an access key id starting with `fn-` is
recorded (SigV4 `Authorization` header, or the `X-Amz-Credential` query
parameter of a presigned URL). Every other request pays one header look-up
and a substring search: the suite makes hundreds of thousands of calls.

Per key, a *set* of records (what was called, not how often):

    {"service": "dynamodb", "operation": "Query", "resource": "<table>",
     "index": "<index>", "status": 200}

- DynamoDB (recorded by moto_server.py under its lock, where the parsed
  request is at hand): the operation is the X-Amz-Target's; the resource is
  TableName. "index" only for a Query or Scan on an index. IAM authorizes
  each action of a transaction as its own operation, so TransactWriteItems
  is recorded as one PutItem / UpdateItem / DeleteItem / ConditionCheckItem
  per action (TransactGetItems as GetItem) on the action's table, plus one
  TransactWriteItems (TransactGetItems) record per table. BatchGetItem and
  BatchWriteItem: one record per table of RequestItems.
- S3 (path-style, `/bucket/key`): the operation is read from the method,
  path and sub-resource (s3_operation); the resource is `bucket/<first key
  segment>/` (`mybucket/bodies/`), `bucket/<key>` when the key has no `/`,
  `bucket` for a bucket operation, `*` for ListBuckets.
- Anything else: the service of the credential scope, the operation of the
  X-Amz-Target (or the form's Action), the resource is the request's
  SecretId (or another identifying member, _RESOURCE_MEMBERS), else `*`.

"status" is the HTTP status of the whole call: a HeadObject answered 404
needs s3:ListBucket in IAM (without it S3 answers 403), and a cancelled
transaction (400) still needed its permissions.

Admin endpoint (answered here, never recorded):
  GET    /_batchq/calls?key=AKID  -> {"key": AKID, "calls": [record, ...]}
  GET    /_batchq/calls           -> {"keys": {AKID: [record, ...], ...}}
  DELETE /_batchq/calls?key=AKID  -> forgets that key ({"key", "calls": []})
  DELETE /_batchq/calls           -> forgets every key ({"keys": {}})
Records are sorted by (service, operation, resource, index, status).
"""

import io
import json
import threading
from urllib.parse import parse_qs, unquote

_lock = threading.Lock()
_calls = {}  # access key id -> {(service, operation, resource, index, status)}

# The marker of a recorded key in an Authorization header or a presigned
# URL's query string (the key's "fn-" is the same URL-encoded).
_MARK = "Credential=fn-"

# Members that name the resource of a JSON-protocol call, first one present wins.
_RESOURCE_MEMBERS = ("SecretId", "Name", "QueueUrl", "TopicArn", "FunctionName", "KeyId", "LogGroupName", "StateMachineArn")


# ---- who is calling


def _scope(credential):
    """(access key id, service) of `AKID/date/region/service/aws4_request`."""
    parts = credential.split("/")
    return parts[0], (parts[3] if len(parts) >= 5 else "")


def header_key(authorization):
    """(access key id, service) of a SigV4 Authorization header signed with an
    `fn-` key, else None. The common case (not recorded) is one substring search."""
    if not authorization or _MARK not in authorization:
        return None
    credential = authorization.split("Credential=", 1)[1].split(",", 1)[0].strip()
    return _scope(credential)


def environ_key(environ):
    """(access key id, service) of a recorded request, else None."""
    auth = environ.get("HTTP_AUTHORIZATION")
    if auth is not None:
        return header_key(auth)
    query = environ.get("QUERY_STRING")
    if not query or _MARK not in query:
        return None
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "X-Amz-Credential":
            return _scope(unquote(value))
    return None


def add(key, service, operation, resource, status, index=None):
    with _lock:
        _calls.setdefault(key, set()).add((service, operation, resource or "*", index or "", int(status)))


# ---- DynamoDB (called by moto_server.py with the parsed request)


def record_dynamodb(key, operation, params, status):
    params = params or {}
    if operation in ("TransactWriteItems", "TransactGetItems"):
        tables = set()
        for action in params.get("TransactItems") or []:
            for kind, spec in action.items():
                table = spec.get("TableName")
                tables.add(table)
                add(key, "dynamodb", _TRANSACT_OPS.get(kind, kind), table, status)
        for table in tables:
            add(key, "dynamodb", operation, table, status)
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        for table in params.get("RequestItems") or {}:
            add(key, "dynamodb", operation, table, status)
    else:
        index = params.get("IndexName") if operation in ("Query", "Scan") else None
        add(key, "dynamodb", operation, params.get("TableName") or params.get("ResourceArn"), status, index)


# The IAM action each kind of transaction action is authorized as.
_TRANSACT_OPS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


# ---- S3

# Bucket sub-resources (`?tagging`) -> the operation name's subject.
_BUCKET_SUBRESOURCES = {
    "acl": "BucketAcl",
    "cors": "BucketCors",
    "encryption": "BucketEncryption",
    "lifecycle": "BucketLifecycleConfiguration",
    "location": "BucketLocation",
    "logging": "BucketLogging",
    "notification": "BucketNotificationConfiguration",
    "ownershipControls": "BucketOwnershipControls",
    "policy": "BucketPolicy",
    "publicAccessBlock": "PublicAccessBlock",
    "tagging": "BucketTagging",
    "versioning": "BucketVersioning",
    "website": "BucketWebsite",
}
_OBJECT_SUBRESOURCES = {
    "acl": "ObjectAcl",
    "attributes": "ObjectAttributes",
    "legal-hold": "ObjectLegalHold",
    "retention": "ObjectRetention",
    "tagging": "ObjectTagging",
}
_VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}


def s3_operation(environ):
    """The S3 API operation of a path-style request."""
    method = environ.get("REQUEST_METHOD", "GET")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    # The Rust SDK (and others built on Smithy) name most operations in `x-id`.
    named = query.get("x-id")
    if named and named[0].isalnum():
        return named[0]
    parts = [p for p in environ.get("PATH_INFO", "").split("/") if p]
    if not parts:
        return "ListBuckets" if method == "GET" else method
    on_object = len(parts) > 1
    subresources = _OBJECT_SUBRESOURCES if on_object else _BUCKET_SUBRESOURCES
    verb = _VERBS.get(method)
    for name, subject in subresources.items():
        if name in query and verb:
            return verb + subject
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPartCopy" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "UploadPart"
        if on_object:
            return "CopyObject" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PutObject"
        return "CreateBucket"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "DeleteObjects" if "delete" in query else "PostObject"
    if method == "GET":
        if on_object:
            return "ListParts" if "uploadId" in query else "GetObject"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "versions" in query:
            return "ListObjectVersions"
        return "ListObjectsV2" if "list-type" in query else "ListObjects"
    if method == "HEAD":
        return "HeadObject" if on_object else "HeadBucket"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObject" if on_object else "DeleteBucket"
    return method


def s3_resource(path):
    """`bucket/<first key segment>/`, `bucket/<key>`, `bucket` or `*`."""
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "*"
    if not key:
        return bucket
    head, slash, _ = key.partition("/")
    return f"{bucket}/{head}{slash}"


# ---- other services


def _body(environ):
    """The request body, read and put back for moto (which reads wsgi.input)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        return b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _other(environ, service):
    """(operation, resource) of a call to a service other than S3 and DynamoDB."""
    target = environ.get("HTTP_X_AMZ_TARGET") or ""
    body = _body(environ)
    operation = target.rpartition(".")[2] if target else ""
    resource = None
    if body[:1] == b"{":
        try:
            params = json.loads(body)
        except ValueError:
            params = {}
        if isinstance(params, dict):
            resource = next((str(params[m]) for m in _RESOURCE_MEMBERS if params.get(m)), None)
    elif not operation:
        form = parse_qs(body.decode("utf-8", "replace")) if body else {}
        operation = (form.get("Action") or parse_qs(environ.get("QUERY_STRING", "")).get("Action") or [""])[0]
    if not operation:
        operation = f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '')}"
    return operation, resource


# ---- WSGI


def recorded(who, dispatch, environ, start_response):
    """Answers a request signed with an `fn-` key (`who`: environ_key's
    answer) through `dispatch`, and records it. DynamoDB is left to
    moto_server.py's handler, which has the parsed request."""
    if (environ.get("HTTP_X_AMZ_TARGET") or "").startswith("DynamoDB_"):
        return dispatch(environ, start_response)
    key, service = who
    path = environ.get("PATH_INFO", "")
    if service == "s3" or (not service and not environ.get("HTTP_X_AMZ_TARGET")):
        service, operation, resource = "s3", s3_operation(environ), s3_resource(path)
    else:
        operation, resource = _other(environ, service)
    status = []

    def capture(status_line, headers, exc_info=None):
        status.append(status_line)
        return start_response(status_line, headers, exc_info)

    try:
        response = dispatch(environ, capture)
    except Exception:
        add(key, service, operation, resource, 500)
        raise
    # Flask answers whole bodies: start_response has been called by now.
    code = int(status[-1].split(" ", 1)[0]) if status else 500
    add(key, service, operation, resource, code)
    return response


def _as_json(record):
    service, operation, resource, index, status = record
    out = {"service": service, "operation": operation, "resource": resource, "status": status}
    if index:
        out["index"] = index
    return out


def _listing(records):
    return [_as_json(r) for r in sorted(records)]


def admin(environ):
    """(status, JSON answer) of /_batchq/calls."""
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    key = (query.get("key") or [None])[0]
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "DELETE"):
        return 405, {"error": "GET or DELETE"}
    with _lock:
        if key is None:
            if method == "DELETE":
                _calls.clear()
            return 200, {"keys": {k: _listing(v) for k, v in sorted(_calls.items())}}
        if method == "DELETE":
            _calls.pop(key, None)
        return 200, {"key": key, "calls": _listing(_calls.get(key, ()))}
