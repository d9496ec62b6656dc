#!/usr/bin/env bash
# `make deploy`: sam build, then sam deploy: guided the first time (it asks
# for the stack name, region and parameters and saves the answers to
# infra/samconfig.toml), from that file afterwards. Needs AWS credentials.
#
# sam build runs the same cargo-lambda commands as `make build` (in the
# workspace root, with the same target), so right after `make build` it only
# copies the bootstraps. The architecture is that of the last `make build`
# (target/lambda/.arch), or ARCH=arm64|x86_64.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-.venv}
case $venv in /*) ;; *) venv=$root/$venv ;; esac
sam=$venv/sam/bin/sam
export PATH="$venv/bin:$PATH" # cargo-lambda and zig, for sam build
export SAM_CLI_TELEMETRY=0

arch=${ARCH:-}
if [ -z "$arch" ]; then
  arch=$(cat "$root/target/lambda/.arch" 2>/dev/null || echo arm64)
fi
case $arch in
  arm64 | x86_64) ;;
  *) echo "deploy: ARCH must be arm64 or x86_64, not '$arch'" >&2; exit 2 ;;
esac

cd "$root/infra"
if [ -f samconfig.toml ]; then
  saved=$(grep -oE 'Architecture=[\\"]*[a-z0-9_]+' samconfig.toml | grep -oE '(arm64|x86_64)$' | head -n1 || true)
  if [ -n "$saved" ] && [ "$saved" != "$arch" ]; then
    cat >&2 <<EOF
deploy: infra/samconfig.toml deploys Architecture=$saved, but the binaries to
deploy are $arch. Either build $saved binaries (make build ARCH=$saved) or
change Architecture in parameter_overrides of infra/samconfig.toml.
EOF
    exit 1
  fi
fi

echo "deploy: sam build ($arch)"
"$sam" build --beta-features --template-file template.yaml --parameter-overrides "Architecture=$arch"

if [ -f samconfig.toml ]; then
  "$sam" deploy
else
  cat <<EOF

deploy: first deployment of this checkout: sam asks for the stack name (e.g.
deploy: batchq), the region and the template parameters (Enter keeps a
deploy: default), and saves the answers to infra/samconfig.toml for the next
deploy: 'make deploy'. Answer 'y' to "Allow SAM CLI IAM role creation" (the
deploy: four functions' roles) and to "Save arguments to configuration file".

EOF
  "$sam" deploy --guided --parameter-overrides "Architecture=$arch"
fi

cat <<'EOF'

deploy: done. If this was the first deployment, put the provider key in the
deploy: secret named by the ProviderKeySecretArn output (docs/operations.md, Deploy to AWS):
deploy:   aws secretsmanager put-secret-value --secret-id <ProviderKeySecretArn> --secret-string "$OPENAI_API_KEY"
EOF
