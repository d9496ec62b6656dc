"""Translates infra/template.yaml with AWS SAM's own translator, offline.

cfn-lint validates AWS::Serverless::Function only by schema: it does not see
a wrong Runtime, Architectures value or schedule expression inside it (see
shared/research/toolchain-feasibility.md). The translated template is plain
CloudFormation, where it does. `make lint-infra` lints both.

    python infra/sam_translate.py infra/template.yaml OUT.json

CodeUri is replaced by an S3 location, as `sam package` would; nothing is
sent anywhere (no AWS credentials are needed or read).
"""

import json
import os
import sys

# The translator insists on a region for pseudo parameters; any will do.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ.pop(var, None)

from cfnlint.decode import cfn_yaml  # noqa: E402  (reads !Ref/!Sub/... short forms)
from samtranslator.translator.transform import transform  # noqa: E402


class NoManagedPolicies:
    """The template names no AWS managed policies, so none are looked up."""

    def load(self):
        return {}


def main(src, dst):
    template = cfn_yaml.load(src)
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://sam-artifacts-bucket/{name}.zip"
    out = transform(template, {}, NoManagedPolicies())
    with open(dst, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"sam_translate: {src} -> {dst} ({len(out['Resources'])} resources)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
